"""Errors of the etcd cluster the controllers share, under the product's one root."""

from __future__ import annotations

from failover.exceptions import FailoverError


class ClusterUnavailable(FailoverError):
    """No etcd endpoint answered a request: every one was tried, each failure is named."""


class LeaseNotFound(FailoverError):
    """A write named a lease that etcd no longer has (it expired or was revoked)."""


class Contended(FailoverError):
    """A conditional write found what it read changed by another writer, every time it tried."""
