"""The provider-API plane's registry: one look at a site's provider account, by ``kind``.

The controller asks each site's provider account a cheap, read-only question
(EC2 ``DescribeInstances``, Hetzner Cloud ``GET /servers``) and sorts the
answer into three. ``up``: it answered. ``down``: no answer in time, a
refused connection, a 5xx, throttling; the API is unwell, which by itself
says little of the site. ``refused``: the provider said no to the
credentials, or said the account is blocked; that is a termination signal,
not an outage.

Every look is one attempt bounded by the timeout (no client retries: the
probe's own interval is the retry), reads its credentials from their file
afresh (a rotated key is picked up at the next look), and never raises: a
missing or unreadable credentials file is reported as ``down`` with the
reason, so the controller keeps running. No detail ever carries a secret.

Each kind lives in its own module (its settings and its checker); this
registry is where the configuration's union (``ApiSettings``, discriminated
by ``kind``) and the checker for a site's settings come from. Adding a kind
is its module plus one member of ``ApiSettings`` and one ``ApiKind`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar, get_args

from pydantic import BaseModel

from failover.watch.providers.answer import ApiAnswer, line
from failover.watch.providers.ec2 import EC2_CALL, Ec2ApiConfig, check_ec2
from failover.watch.providers.hcloud import HCLOUD_CALL, HcloudApiConfig, check_hcloud

__all__ = ["KINDS", "ApiAnswer", "ApiKind", "ApiSettings", "Ec2ApiConfig", "HcloudApiConfig",
           "check_api"]

ApiSettings = Ec2ApiConfig | HcloudApiConfig  # one member per kind in KINDS

A = TypeVar("A", bound=BaseModel)


@dataclass(frozen=True)
class ApiKind(Generic[A]):
    """One kind of provider API: its settings, its checker, the call a detail names."""

    settings: type[A]  # the config file's section; its ``kind`` Literal is the tag
    check: Callable[[A, float], ApiAnswer]  # may raise: check_api turns that into down
    call: str  # e.g. "EC2 DescribeInstances"

    @property
    def tag(self) -> str:
        """The ``kind`` written in the config file, e.g. ``ec2``."""
        tag: str = get_args(self.settings.model_fields["kind"].annotation)[0]
        return tag


KINDS: Mapping[str, ApiKind[Any]] = MappingProxyType({kind.tag: kind for kind in (
    ApiKind(Ec2ApiConfig, check_ec2, EC2_CALL),
    ApiKind(HcloudApiConfig, check_hcloud, HCLOUD_CALL),
)})


def check_api(config: ApiSettings, timeout: float) -> ApiAnswer:
    """Ask the provider's API one read-only question within ``timeout`` s; never raises."""
    kind = KINDS[config.kind]
    try:
        return kind.check(config, timeout)
    except Exception as exc:  # a probe reports, it never takes the controller down
        return ApiAnswer("down", f"{kind.call}: {type(exc).__name__}: {line(exc)}", None)
