"""A transaction's parts: the conditions it compares, the writes it makes, what it did.

``EtcdCluster.txn`` sends them as one request: etcd checks every condition
and, at one revision, makes either the writes for success or those for
failure. Keys are relative to the deployment's prefix, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: the key's ``target`` is ``result`` to ``against``.

    Targets: VALUE (text), VERSION (writes since the key was created), CREATE
    (create_revision), MOD (mod_revision); an absent key has 0 for the numbers
    and fails every VALUE condition. With ``prefix``, every key under ``key``
    must meet it (none there: as one absent key).
    """

    key: str
    target: Literal["VALUE", "VERSION", "CREATE", "MOD"]
    against: str | int
    result: Literal["EQUAL", "NOT_EQUAL", "LESS", "GREATER"] = "EQUAL"
    prefix: bool = False

    @classmethod
    def absent(cls, key: str) -> Compare:
        """The key does not exist."""
        return cls(key, "CREATE", 0)

    @classmethod
    def unchanged(cls, key: str, mod_revision: int) -> Compare:
        """The key's last write is still the one at ``mod_revision`` (0: it is still absent)."""
        return cls(key, "MOD", mod_revision)

    @classmethod
    def nothing_newer(cls, prefix: str, revision: int) -> Compare:
        """No key under ``prefix`` was written after ``revision`` (one deleted is not seen)."""
        return cls(prefix, "MOD", revision + 1, "LESS", prefix=True)


@dataclass(frozen=True)
class Put:
    """A transaction's write of one key (bound to ``lease``, if any)."""

    key: str
    value: str
    lease: int | None = None


@dataclass(frozen=True)
class Delete:
    """A transaction's removal of one key, or of every key under it (``prefix``), or of the
    keys from it up to ``end`` (not included)."""

    key: str
    prefix: bool = False
    end: str | None = None


@dataclass(frozen=True)
class TxnResult:
    """Whether a transaction's conditions held (its success ops ran), and the revision then."""

    succeeded: bool
    revision: int


# Tries of a conditional write whose reads other writers keep changing; each try
# reads afresh. Writers are few (a leader, the CLI, a webhook): one or two suffice.
ATTEMPTS = 8
