"""The lab's object stores and backup repositories, as the engine's and agents' configs name them.

Every site has a moto server: its ``media`` bucket holds the app's objects
(aws's and hetzner's are the sites' own, the spare's is the copy kept off
both providers), and its ``backups`` bucket is a pgBackRest repository,
reached through the site's TLS terminator. A primary uses the repositories
and copies objects to the buckets at every provider but its own.
"""

from __future__ import annotations

from failover.agent.config import BackupSpec, ObjectsSpec, ReplicaSpec
from failover.stores import ObjectStoreConfig, RepositoryConfig
from infra.lab.layout import BACKUP_BUCKET, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import aws_credentials_file

STANZA = "social"
ARCHIVE_TIMEOUT = 5  # seconds: the bound on writes a rebuild may lose
IO_TIMEOUT = 5  # a dark store costs seconds in a drill, not pgBackRest's minute


def object_store(layout: LabLayout, paths: LabPaths, site: str) -> ObjectStoreConfig:
    """A site's media bucket."""
    return ObjectStoreConfig(endpoint_url=layout.s3_endpoint(site), bucket=layout.bucket,
                             region=layout.region,
                             credentials_file=aws_credentials_file(paths), timeout=5)


def repositories(layout: LabLayout, paths: LabPaths) -> dict[str, RepositoryConfig]:
    """Every site's pgBackRest repository (each host uses those at other providers)."""
    return {
        site: RepositoryConfig(
            provider=site, endpoint=layout.address(site), port=layout.s3_tls_port,
            bucket=BACKUP_BUCKET, region=layout.region, uri_style="path",
            verify_tls=False,  # the lab's certificates are self-signed
            credentials_file=aws_credentials_file(paths))
        for site in layout.sites
    }


def backup_spec(layout: LabLayout, paths: LabPaths, site: str) -> BackupSpec:
    """A site agent's backup section."""
    return BackupSpec(stanza=STANZA, repositories=repositories(layout, paths),
                      dir=paths.root / "pgbackrest" / site, archive_timeout=ARCHIVE_TIMEOUT,
                      io_timeout=IO_TIMEOUT)


def objects_spec(layout: LabLayout, paths: LabPaths, site: str) -> ObjectsSpec:
    """A site agent's objects section: its bucket, and every other site's as a replica."""
    return ObjectsSpec(
        bucket=object_store(layout, paths, site),
        replicas={other: ReplicaSpec(provider=other, store=object_store(layout, paths, other))
                  for other in layout.sites if other != site})
