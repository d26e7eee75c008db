"""The lab's secrets, generated fresh at every ``lab up``.

Passwords, the TSIG key, the S3/AWS keys, the tokens of the fake Hetzner
Cloud APIs (hetzner's and spare's) and the controller's webhook secret are
random per lab, written into 0600 files under the state dir, and handed to
servers through files (pgpass, an AWS credentials file, BIND's key clause,
token files), not command lines. The EC2 keys are the exception: moto's IAM
makes them, so ``infra.lab.ec2`` writes their files once it has them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from failover.aws import load_credentials
from failover.dns.tsig import TsigKey
from failover.secretfiles import read_private, write_private
from infra.lab.paths import LabPaths

TSIG_KEY_NAME = "failover-lab."


@dataclass(frozen=True)
class LabSecrets:
    """Every secret of one lab."""

    postgres_password: str
    replication_password: str
    app_password: str
    aws_access_key_id: str
    aws_secret_access_key: str
    tsig: TsigKey
    hcloud_token: str  # the hetzner project's API token, as the controller holds it
    hcloud_admin_token: str  # the fake's own control (/_fake/...), e.g. to block the project
    hcloud_spare_token: str  # the spare site's project (hcloud@spare), as a rebuild holds it
    hcloud_spare_admin_token: str  # the control of the spare site's fake
    webhook_secret: str  # signs notices sent to the controller (failover watch)

    def __repr__(self) -> str:
        return "LabSecrets(<hidden>)"

    @classmethod
    def generate(cls) -> LabSecrets:
        """Fresh random secrets."""
        return cls(
            postgres_password=secrets.token_urlsafe(24),
            replication_password=secrets.token_urlsafe(24),
            app_password=secrets.token_urlsafe(24),
            aws_access_key_id="AKIA" + secrets.token_hex(8).upper(),
            aws_secret_access_key=secrets.token_urlsafe(30),
            tsig=TsigKey.generate(TSIG_KEY_NAME),
            # Hetzner's tokens are 64 characters of [A-Za-z0-9]; hex is of that kind.
            hcloud_token=secrets.token_hex(32),
            hcloud_admin_token=secrets.token_hex(32),
            hcloud_spare_token=secrets.token_hex(32),
            hcloud_spare_admin_token=secrets.token_hex(32),
            webhook_secret=secrets.token_urlsafe(32),
        )

    def save(self, paths: LabPaths, addresses: list[str], pg_port: int) -> None:
        """Write the secret files (0600 in a 0700 directory)."""
        paths.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths.secrets.chmod(0o700)
        for name in ("postgres", "replication", "app"):
            write_private(paths.secrets / f"{name}.password", getattr(self, f"{name}_password"))
        self.tsig.save(paths.secrets / "tsig.key")
        write_private(
            paths.secrets / "aws-credentials",
            "[default]\n"
            f"aws_access_key_id = {self.aws_access_key_id}\n"
            f"aws_secret_access_key = {self.aws_secret_access_key}\n",
        )
        write_private(hcloud_token_file(paths), self.hcloud_token + "\n")
        write_private(hcloud_admin_token_file(paths), self.hcloud_admin_token + "\n")
        write_private(hcloud_spare_token_file(paths), self.hcloud_spare_token + "\n")
        write_private(hcloud_spare_admin_token_file(paths), self.hcloud_spare_admin_token + "\n")
        write_private(webhook_secret_file(paths), self.webhook_secret + "\n")
        users = (("postgres", self.postgres_password), ("app", self.app_password),
                 ("replicator", self.replication_password))
        # libpq's own password file, so DSNs and command lines carry no password.
        write_private(
            pgpass_file(paths),
            "".join(f"{a}:{pg_port}:*:{u}:{pw}\n" for a in addresses for u, pw in users),
        )

    @classmethod
    def load(cls, paths: LabPaths) -> LabSecrets:
        """Read the secrets of a lab started earlier."""
        d = paths.secrets

        def read(name: str) -> str:
            return read_private(d / name, "lab secret file").strip()

        creds = load_credentials(aws_credentials_file(paths))
        return cls(
            postgres_password=read("postgres.password"),
            replication_password=read("replication.password"),
            app_password=read("app.password"),
            aws_access_key_id=creds["aws_access_key_id"],
            aws_secret_access_key=creds["aws_secret_access_key"],
            tsig=TsigKey.load(d / "tsig.key"),
            hcloud_token=read(hcloud_token_file(paths).name),
            hcloud_admin_token=read(hcloud_admin_token_file(paths).name),
            hcloud_spare_token=read(hcloud_spare_token_file(paths).name),
            hcloud_spare_admin_token=read(hcloud_spare_admin_token_file(paths).name),
            webhook_secret=read(webhook_secret_file(paths).name),
        )


def pgpass_file(paths: LabPaths) -> Path:
    """The lab's libpq password file."""
    return paths.secrets / "pgpass"


def aws_credentials_file(paths: LabPaths) -> Path:
    """The lab's AWS shared-credentials file."""
    return paths.secrets / "aws-credentials"


def hcloud_token_file(paths: LabPaths) -> Path:
    """The hetzner project's API token (what the controller reads)."""
    return paths.secrets / "hcloud.token"


def hcloud_admin_token_file(paths: LabPaths) -> Path:
    """The admin token of the fake Hetzner Cloud API's own control."""
    return paths.secrets / "hcloud-admin.token"


def hcloud_spare_token_file(paths: LabPaths) -> Path:
    """The spare site's project API token (what a rebuild provisions with)."""
    return paths.secrets / "hcloud-spare.token"


def hcloud_spare_admin_token_file(paths: LabPaths) -> Path:
    """The admin token of the spare site's fake Hetzner Cloud API."""
    return paths.secrets / "hcloud-spare-admin.token"


def webhook_secret_file(paths: LabPaths) -> Path:
    """The shared secret that signs notices posted to the controller."""
    return paths.secrets / "webhook.secret"


def ec2_credentials_file(paths: LabPaths) -> Path:
    """The controller's key to the aws account's EC2 (IAM user failover-watch)."""
    return paths.secrets / "ec2-credentials"


def ec2_admin_credentials_file(paths: LabPaths) -> Path:
    """The lab's admin key to ec2@aws's IAM: it revokes and issues the controller's key."""
    return paths.secrets / "ec2-admin-credentials"
