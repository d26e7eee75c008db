"""pgBackRest's repositories: versioned buckets at providers other than the primary's.

Each stack makes the repositories its settings list (``failover:backups``),
at AWS in any region or at Hetzner through its S3 API. The primary's agent
archives to every repository whose provider is not its own, so that losing
the primary's provider never loses the backups too; the policy test
(``tests/stacks``) and ``failover.yaml``'s own check hold the stacks to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.settings import KeyPair, RepositoryTarget
from infra.components.storage import (
    ApiUser,
    ApiUserArgs,
    BucketArgs,
    VersionedBucket,
    bucket_policy,
    hetzner_s3,
    keys_output,
    s3_host,
)

REPOSITORY_PATH = "/pgbackrest"  # where in the bucket, as the lab has it


@dataclass(frozen=True)
class BackupRepoArgs:
    """The repositories to make, and Hetzner's S3 keys for those at Hetzner."""

    repositories: Sequence[RepositoryTarget]
    hetzner_keys: KeyPair | None = None
    aws_region: str | None = None  # the stack's own: repositories there use its provider


class BackupRepo(pulumi.ComponentResource):
    """One versioned bucket per repository, and the keys pgBackRest reaches it with: an
    IAM user allowed that bucket alone at AWS, Hetzner's S3 keys at Hetzner."""

    def __init__(self, name: str, args: BackupRepoArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("failover:infra:BackupRepo", name, None, opts)
        self.repositories: dict[str, dict[str, Any]] = {}
        self.credentials: dict[str, KeyPair] = {}
        for target in args.repositories:
            keys = args.hetzner_keys if target.provider == "hetzner" else None
            if target.provider == "hetzner" and keys is None:
                raise ValueError(f"repository {target.name} is at Hetzner: its S3 keys are "
                                 "needed")
            bucket, self.credentials[target.name] = self._repository(
                f"{name}-{target.name}", target, keys, args.aws_region)
            self.repositories[target.name] = {
                "provider": target.provider, "endpoint": s3_host(target.provider, target.region),
                "port": 443, "bucket": bucket.name, "region": target.region,
                "path": REPOSITORY_PATH, "uri_style": "host"}
        self.register_outputs({"repositories": self.repositories})

    def _repository(self, name: str, target: RepositoryTarget, hetzner_keys: KeyPair | None,
                    aws_region: str | None) -> tuple[VersionedBucket, KeyPair]:
        """A repository's bucket and its keys: Hetzner's own, or an IAM user of its own."""
        child = pulumi.ResourceOptions(parent=self)
        if hetzner_keys is not None:
            s3 = hetzner_s3(f"{name}-s3", target.region, hetzner_keys, opts=child)
            return VersionedBucket(name, BucketArgs(target.bucket, provider=s3,
                                                    block_public=False), opts=child), hetzner_keys
        # Another region needs a provider of its own (its credentials from the environment).
        region = None if target.region == aws_region else aws.Provider(
            f"{name}-aws", region=target.region, opts=child)
        bucket = VersionedBucket(name, BucketArgs(target.bucket, provider=region), opts=child)
        user = ApiUser(f"{name}-user", ApiUserArgs(f"failover-backup-{target.name}",
                                                   bucket_policy([bucket.arn])), opts=child)
        return bucket, user.keys

    def credentials_output(self) -> pulumi.Output[dict[str, Any]]:
        """Each repository's keys by name, as the stack exports them: one secret mapping."""
        # Secret as a whole: a plain mapping of secrets is exported with its keys in the
        # clear, and `pulumi stack output` (so the Automation API) calls it not secret.
        return pulumi.Output.secret({name: keys_output(keys)
                                     for name, keys in self.credentials.items()})
