"""RFC 2136 dynamic updates, signed with TSIG: BIND 9, Knot, PowerDNS and friends.

Reads ask the server directly for each (name, type); zone transfers are not
used because servers rightly refuse them to strangers. Each change is sent
as one signed update message carrying prerequisites (RFC 2136 section 2.4)
that make the server refuse it when the record is no longer what the plan
saw, so two writers can never silently overwrite each other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
from pydantic import BaseModel, ConfigDict, Field, field_validator

from failover.dns import authoritative
from failover.dns.base import DnsProvider, Reader, log_event
from failover.dns.exceptions import PrerequisiteFailed, ProviderUnreachable
from failover.dns.records import Change, Create, Plan, Record, RecordKey, Update
from failover.dns.tsig import TsigKey
from failover.exceptions import ProviderError

# The prerequisite failed: the record is not what the plan saw.
_PREREQUISITE_RCODES = {dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN,
                        dns.rcode.YXDOMAIN}
# The server would not take an update from us at all.
_REFUSAL_RCODES = {dns.rcode.NOTAUTH, dns.rcode.REFUSED}
# dnspython's exceptions for the TSIG errors of RFC 8945, by their names there.
_TSIG_ERRORS: dict[type[dns.tsig.PeerError], str] = {
    dns.tsig.PeerBadKey: "BADKEY", dns.tsig.PeerBadSignature: "BADSIG",
    dns.tsig.PeerBadTime: "BADTIME", dns.tsig.PeerBadTruncation: "BADTRUNC",
}


class Rfc2136Settings(BaseModel):
    """An RFC 2136 server in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rfc2136"]
    server: str = Field(description="IP address of the primary server (updates go there)")
    port: int = Field(default=53, ge=1, le=65535)
    zone: str
    tsig_key_file: Path = Field(description="BIND key file (tsig-keygen's format), mode 0600")
    timeout: float = Field(
        default=3.0, gt=0, le=60, description="seconds per query or update",
    )

    @field_validator("server")
    @classmethod
    def _an_ip_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address (a name would need DNS "
                             "to reach DNS)") from None

    @field_validator("zone")
    @classmethod
    def _absolute_zone(cls, value: str) -> str:
        value = value.strip().lower()
        return value if value.endswith(".") else value + "."


class Rfc2136Provider(DnsProvider):
    """A zone on a server that takes TSIG-signed RFC 2136 updates."""

    KIND = "rfc2136"
    SUPPORTS = frozenset({"A", "AAAA", "CNAME", "TXT", "NS"})

    def __init__(self, name: str, settings: Rfc2136Settings) -> None:
        super().__init__(name, settings.zone)
        self.settings = settings
        self._key = TsigKey.load(settings.tsig_key_file)  # ConfigError now, not mid-failover

    @property
    def where(self) -> str:
        """The server as ``address:port``."""
        return f"{self.settings.server}:{self.settings.port}"

    def _read(self, keys: Sequence[RecordKey]) -> dict[RecordKey, Record]:
        return authoritative.read_records(
            self.settings.server, self.settings.port, keys,
            timeout=self.settings.timeout, provider=self.name,
        )

    def _verify_sources(self) -> Sequence[tuple[str, Reader]]:
        return [(self.where, self._read)]

    def _apply(self, plan: Plan) -> None:
        for done, change in enumerate(plan.changes):
            try:
                self._send(change)
            except ProviderError as exc:
                if not done:
                    raise
                # Say what is already live: the messages are not one transaction.
                raise type(exc)(
                    f"{exc} ({done} earlier change(s) of this plan were applied)",
                    provider=exc.provider, code=exc.code, request_id=exc.request_id,
                ) from exc
            log_event("dns.change", provider=self.name, change=str(change))

    def _message(self, change: Change) -> dns.update.UpdateMessage:
        """One signed update: prerequisites first, then the change itself."""
        keyring = dns.tsig.Key(self._key.name, self._key.secret, self._key.algorithm)
        update = dns.update.UpdateMessage(self.zone, keyring=keyring)
        if isinstance(change, Create):
            record = change.desired
            update.absent(record.name, record.rtype)
            update.add(record.name, record.ttl, record.rtype, *record.values)
        elif isinstance(change, Update):
            old, new = change.existing, change.desired
            # A value-dependent prerequisite: the RRset must be exactly these
            # values (RFC 2136 compares values, not TTLs; its TTL must be 0).
            update.present(old.name, old.rtype, *old.values)
            update.replace(new.name, new.ttl, new.rtype, *new.values)
        else:
            old = change.existing
            update.present(old.name, old.rtype, *old.values)
            update.delete(old.name, old.rtype)
        return update

    def _send(self, change: Change) -> None:
        timeout = self.settings.timeout
        try:
            # TCP: an update must not be lost or repeated, and it may be large.
            response = dns.query.tcp(
                self._message(change), self.settings.server, port=self.settings.port,
                timeout=timeout,
            )
        except dns.exception.Timeout:
            raise ProviderUnreachable(
                f"no answer from {self.name} at {self.where} within {timeout:g}s "
                f"while sending: {change}", provider=self.name, code="TIMEOUT",
            ) from None
        except OSError as exc:
            raise ProviderUnreachable(
                f"cannot reach {self.name} at {self.where}: {exc.strerror or exc}",
                provider=self.name, code="UNREACHABLE",
            ) from exc
        except dns.tsig.PeerError as exc:
            code = _TSIG_ERRORS.get(type(exc), "TSIG")
            raise ProviderError(
                f"{self.name} at {self.where} refused the update: wrong TSIG key? "
                f"(the server said {code}); check that {self.settings.tsig_key_file} holds "
                f"the key the server has for {self.zone}",
                provider=self.name, code=code,
            ) from exc
        except dns.exception.DNSException as exc:
            raise ProviderError(
                f"{self.name} at {self.where} sent a malformed answer to an update: {exc}",
                provider=self.name, code="FORMERR",
            ) from exc
        self._check_rcode(response, change)

    def _check_rcode(self, response: dns.message.Message, change: Change) -> None:
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        code = dns.rcode.to_text(rcode)
        if rcode in _PREREQUISITE_RCODES:
            raise PrerequisiteFailed(
                f"{self.name} refused '{change}': {change.key[0]} {change.key[1]} changed "
                f"since the plan was made ({code}); nothing was changed by this update. "
                "Plan again and review",
                provider=self.name, code=code,
            )
        if rcode in _REFUSAL_RCODES:
            raise ProviderError(
                f"{self.name} at {self.where} refused the update ({code}): wrong TSIG key, or "
                f"a key not allowed to update {self.zone}? The key used is "
                f"{self._key.name!r} from {self.settings.tsig_key_file}",
                provider=self.name, code=code,
            )
        raise ProviderError(
            f"{self.name} at {self.where} failed the update '{change}' ({code}); "
            "see the server's log",
            provider=self.name, code=code,
        )
