"""The aws site's EC2 account (part ``ec2@aws``): a moto server of its own, IAM enforced.

The controller watches the aws account with ``DescribeInstances`` under a key
of its own, so that a drill can make the API *really* refuse it. moto checks
signatures and IAM policies only once a process-wide counter of requests
passes ``INITIAL_NO_AUTH_ACTION_COUNT`` (infinite by default). This server
therefore runs alone: S3 and Route 53, which the lab reaches with keys that
IAM never issued, stay in servers that check nothing.

At every start the lab seeds the account while nothing is checked yet: an
admin IAM user (policy ``*``) and its key, the controller's user
``failover-watch`` (policy ``ec2:Describe*``) and its key, and one instance
tagged ``Name=aws-app``. Then it posts 0 to moto's ``/moto-api/reset-auth``
(what moto's own ``set_initial_no_auth_action_count`` posts in server mode):
from there on every call is checked against IAM. Seeding before enforcing,
rather than starting with the counter at the exact number of seeding calls,
keeps a stray early request (the controller probing a restarted server) from
using up a free call and failing the seeding.

moto only asks whether a key exists (it ignores ``Status=Inactive``), so a
key is revoked by deleting it: ``DescribeInstances`` then fails with
``AuthFailure`` (HTTP 401), as EC2 answers a key it does not know.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError

from failover.aws import load_credentials
from failover.exceptions import ProviderError
from failover.processes import ProcessRecord, spawn
from failover.secretfiles import write_private
from infra.lab import moto
from infra.lab.layout import EC2_PART, EC2_SITE, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets, ec2_admin_credentials_file, ec2_credentials_file

ADMIN_USER = "lab-admin"
WATCH_USER = "failover-watch"
INSTANCE_NAME = f"{EC2_SITE}-app"
IAM_REGION = "us-east-1"  # IAM is global; its requests are signed for us-east-1
# moto does not validate image ids unless asked to; one that looks real will do.
IMAGE_ID = "ami-0a1b2c3d4e5f60718"
_ALLOW = {"Version": "2012-10-17"}
# Credentials in the caller's environment must not reach the server's own boto3.
_HIDDEN_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_PROFILE", "INITIAL_NO_AUTH_ACTION_COUNT")


def server_env() -> dict[str, str]:
    """The environment of ``ec2@aws``'s server: ours without AWS credentials."""
    return {k: v for k, v in os.environ.items() if k not in _HIDDEN_ENV}


def start(layout: LabLayout, paths: LabPaths) -> ProcessRecord:
    """Start the moto server of ``ec2@aws`` (nothing checked until ``seed`` enforces IAM)."""
    return spawn(EC2_PART, moto.server(layout, paths, EC2_PART).argv, log=paths.log(EC2_PART),
                 env=server_env())


def wait_ready(layout: LabLayout, timeout: float = 30.0) -> None:
    """Wait until the server answers HTTP."""
    moto.wait_ready(layout, EC2_PART, timeout=timeout)


def _client(
    session: boto3.session.Session, layout: LabLayout, service: str, creds: dict[str, str],
    timeout: float,
) -> Any:
    """A client of ``ec2@aws`` for one service and key: one attempt, bounded by ``timeout``.

    Each caller brings a session of its own: the lab seeds EC2 in a thread while
    it makes buckets, and boto3's default session is not safe to share so.
    """
    return session.client(
        service,  # type: ignore[call-overload]  # boto3's overloads want a literal name
        endpoint_url=layout.ec2_endpoint,
        region_name=IAM_REGION if service == "iam" else layout.region,
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
        config=Config(connect_timeout=timeout, read_timeout=timeout,
                      retries={"total_max_attempts": 1}),
    )


def _write_key(path: Path, key: dict[str, Any]) -> dict[str, str]:
    """Write an access key IAM just made into a shared-credentials file (0600)."""
    creds = {"aws_access_key_id": key["AccessKeyId"],
             "aws_secret_access_key": key["SecretAccessKey"]}
    write_private(path, "[default]\n" + "".join(f"{k} = {v}\n" for k, v in creds.items()))
    return creds


def _stranger(secrets: LabSecrets) -> dict[str, str]:
    """The lab's S3 key: this IAM never issued it, so once IAM is enforced it is refused."""
    return {"aws_access_key_id": secrets.aws_access_key_id,
            "aws_secret_access_key": secrets.aws_secret_access_key}


def _policy(action: str) -> str:
    return json.dumps({**_ALLOW, "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": "*"},
    ]})


def seed(layout: LabLayout, paths: LabPaths, secrets: LabSecrets, timeout: float = 30.0) -> str:
    """Create the account's users, keys and instance, then enforce IAM; returns the instance id.

    Writes the controller's key to ``secrets/ec2-credentials`` and the admin's
    to ``secrets/ec2-admin-credentials`` (both 0600, shared-credentials format).
    """
    session = boto3.session.Session()
    iam = _client(session, layout, "iam", _stranger(secrets), timeout)  # nothing checked yet
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="everything",
                        PolicyDocument=_policy("*"))
    admin = _write_key(ec2_admin_credentials_file(paths),
                       iam.create_access_key(UserName=ADMIN_USER)["AccessKey"])
    iam = _client(session, layout, "iam", admin, timeout)
    iam.create_user(UserName=WATCH_USER)
    iam.put_user_policy(UserName=WATCH_USER, PolicyName="describe",
                        PolicyDocument=_policy("ec2:Describe*"))
    _write_key(ec2_credentials_file(paths),
               iam.create_access_key(UserName=WATCH_USER)["AccessKey"])
    reservation = _client(session, layout, "ec2", admin, timeout).run_instances(
        ImageId=IMAGE_ID, InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": INSTANCE_NAME}]}],
    )
    instance_id: str = reservation["Instances"][0]["InstanceId"]
    enforce(session, layout, secrets, timeout)
    return instance_id


def enforce(
    session: boto3.session.Session, layout: LabLayout, secrets: LabSecrets, timeout: float = 5.0
) -> None:
    """Make moto check every later call against IAM, and prove that it does."""
    response = httpx.post(f"{layout.ec2_endpoint}/moto-api/reset-auth", content=b"0",
                          timeout=timeout)
    response.raise_for_status()
    try:
        _client(session, layout, "ec2", _stranger(secrets), timeout).describe_instances(
            MaxResults=5)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "AuthFailure":
            return
        raise
    raise ProviderError(f"{EC2_PART} still answers keys IAM never issued after reset-auth",
                        provider="lab", code="auth-not-enforced")


def _admin_iam(layout: LabLayout, paths: LabPaths, timeout: float) -> Any:
    return _client(boto3.session.Session(), layout, "iam",
                   load_credentials(ec2_admin_credentials_file(paths)), timeout)


def _short(key_id: str) -> str:
    return f"…{key_id[-4:]}"  # an access key id is no secret, but need not be shown whole


def revoke(layout: LabLayout, paths: LabPaths, timeout: float = 5.0) -> str:
    """Delete every access key of the controller's IAM user; returns a sentence."""
    iam = _admin_iam(layout, paths, timeout)
    keys = [k["AccessKeyId"] for k in
            iam.list_access_keys(UserName=WATCH_USER)["AccessKeyMetadata"]]
    for key_id in keys:
        iam.delete_access_key(UserName=WATCH_USER, AccessKeyId=key_id)
    if not keys:
        return f"{EC2_PART}: IAM user {WATCH_USER} had no access key left to revoke"
    return (f"{EC2_PART}: deleted access key {', '.join(map(_short, keys))} of IAM user "
            f"{WATCH_USER}; EC2 now refuses it (AuthFailure)")


def restore(layout: LabLayout, paths: LabPaths, timeout: float = 5.0) -> str:
    """Issue the controller a new key, written to ``secrets/ec2-credentials``; a sentence.

    Does nothing when the key in the file is still one of the user's.
    """
    iam = _admin_iam(layout, paths, timeout)
    keys = [k["AccessKeyId"] for k in
            iam.list_access_keys(UserName=WATCH_USER)["AccessKeyMetadata"]]
    try:
        current = load_credentials(ec2_credentials_file(paths))["aws_access_key_id"]
    except Exception:  # a missing or damaged file: a new key mends it
        current = None
    if current is not None and current in keys:
        return f"{EC2_PART}: the controller's key {_short(current)} is still valid"
    for key_id in keys:  # IAM allows two keys a user; stale ones go
        iam.delete_access_key(UserName=WATCH_USER, AccessKeyId=key_id)
    creds = _write_key(ec2_credentials_file(paths),
                       iam.create_access_key(UserName=WATCH_USER)["AccessKey"])
    return (f"{EC2_PART}: new access key {_short(creds['aws_access_key_id'])} for IAM user "
            f"{WATCH_USER}, written to {ec2_credentials_file(paths).name}")
