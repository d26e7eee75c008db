"""Buckets and the keys that reach them: a versioned bucket at AWS or Hetzner, and an IAM
user allowed one policy.

Hetzner's object storage speaks S3, but pulumi-hcloud (1.x) has no bucket
resource; its buckets are made with pulumi-aws's S3 resources through a
provider pointed at Hetzner's endpoint (``hetzner_s3``), with the S3 keys made
in Hetzner's console (its API cannot make them). Every bucket is versioned, so
an object overwritten or deleted by mistake (or by an attacker with the app's
keys) can still be read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.settings import KeyPair, Provider


def s3_host(provider: Provider, region: str) -> str:
    """The S3 endpoint's host name at a provider's region (at Hetzner: its location)."""
    if provider == "hetzner":
        return f"{region}.your-objectstorage.com"
    return f"s3.{region}.amazonaws.com"


def s3_url(provider: Provider, region: str) -> str:
    """The S3 endpoint's URL, e.g. https://fsn1.your-objectstorage.com."""
    return f"https://{s3_host(provider, region)}"


def hetzner_s3(name: str, location: str, keys: KeyPair,
               opts: pulumi.ResourceOptions | None = None) -> aws.Provider:
    """A pulumi-aws provider that makes S3 resources at Hetzner's object storage."""
    return aws.Provider(
        name, region=location, access_key=keys.access_key_id,
        secret_key=keys.secret_access_key,
        endpoints=[aws.ProviderEndpointArgs(s3=s3_url("hetzner", location))],
        # Hetzner has no STS, IAM or EC2 metadata: the provider must not ask for them.
        skip_credentials_validation=True, skip_region_validation=True,
        skip_requesting_account_id=True, skip_metadata_api_check=True, opts=opts)


@dataclass(frozen=True)
class BucketArgs:
    """A bucket's name, and the provider to make it with (None: the stack's AWS one)."""

    bucket: str
    provider: pulumi.ProviderResource | None = None
    block_public: bool = True  # AWS's public access block; Hetzner has no such API


class VersionedBucket(pulumi.ComponentResource):
    """An S3(-compatible) bucket with versioning on."""

    def __init__(self, name: str, args: BucketArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:VersionedBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        # force_destroy stays off: `stack destroy` must not take a site's data with it.
        self.bucket = aws.s3.Bucket(name, bucket=args.bucket, force_destroy=False, opts=child)
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"),
            opts=child)
        if args.block_public:
            aws.s3.BucketPublicAccessBlock(
                f"{name}-private", bucket=self.bucket.id, block_public_acls=True,
                block_public_policy=True, ignore_public_acls=True,
                restrict_public_buckets=True, opts=child)
        self.name: pulumi.Output[str] = self.bucket.bucket
        self.arn: pulumi.Output[str] = self.bucket.arn
        self.register_outputs({"bucket": self.name, "arn": self.arn})


def bucket_policy(arns: list[pulumi.Output[str]]) -> pulumi.Output[str]:
    """An IAM policy that reads and writes the objects of these buckets, and nothing else."""

    def document(resolved: list[str]) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": sorted(resolved)},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
             "Resource": sorted(f"{arn}/*" for arn in resolved)},
        ]})

    return pulumi.Output.all(*arns).apply(document)


@dataclass(frozen=True)
class ApiUserArgs:
    """An IAM user's name and the one inline policy it holds."""

    user_name: str
    policy: pulumi.Input[str]  # a JSON policy document


class ApiUser(pulumi.ComponentResource):
    """An IAM user allowed its one policy, and its access key (the secret half a secret)."""

    def __init__(self, name: str, args: ApiUserArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:ApiUser", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.user = aws.iam.User(name, name=args.user_name, opts=child)
        aws.iam.UserPolicy(f"{name}-policy", user=self.user.name, policy=args.policy,
                           opts=child)
        key = aws.iam.AccessKey(f"{name}-key", user=self.user.name, opts=child)
        self.keys = KeyPair(access_key_id=pulumi.Output.secret(key.id),
                            secret_access_key=pulumi.Output.secret(key.secret))
        self.register_outputs({"user": self.user.name})


def keys_output(keys: KeyPair) -> pulumi.Output[dict[str, Any]]:
    """A key pair as a stack output: one secret mapping."""
    return pulumi.Output.secret(pulumi.Output.all(
        access_key_id=keys.access_key_id, secret_access_key=keys.secret_access_key))
