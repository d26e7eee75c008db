"""BIND 9 in the lab accepts RFC 2136 updates signed with the lab's key, and only those."""

from __future__ import annotations

import base64
import secrets
import uuid

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from failover.dns.tsig import TsigKey
from tests.conftest import RunningLab

pytestmark = pytest.mark.lab


def _send(lab: RunningLab, key: TsigKey | None, name: str, address: str) -> dns.message.Message:
    keyring = dns.tsig.Key(key.name, key.secret, key.algorithm) if key else None
    update = dns.update.UpdateMessage(lab.layout.zone, keyring=keyring)
    update.replace(name, 5, "A", address)
    return dns.query.tcp(update, lab.layout.dns_address, port=lab.layout.dns_port, timeout=3)


def _fresh_name() -> str:
    return f"probe-{uuid.uuid4().hex[:8]}"


def test_an_update_signed_with_the_lab_key_is_applied(lab: RunningLab) -> None:
    name = _fresh_name()
    response = _send(lab, lab.secrets.tsig, name, "127.0.99.1")
    assert response.rcode() == dns.rcode.NOERROR
    assert lab.resolve(f"{name}.{lab.layout.zone}") == ["127.0.99.1"]


def test_an_update_signed_with_a_wrong_key_is_refused_and_changes_nothing(
    lab: RunningLab,
) -> None:
    before = lab.resolve()
    forged = TsigKey(lab.secrets.tsig.name, lab.secrets.tsig.algorithm,
                     base64.b64encode(secrets.token_bytes(32)).decode())
    # BIND answers NOTAUTH/BADSIG; dnspython reports that as a TSIG error.
    with pytest.raises(dns.tsig.PeerBadSignature):
        _send(lab, forged, lab.layout.app_label, "127.0.99.2")
    assert lab.resolve() == before


def test_an_unsigned_update_is_refused(lab: RunningLab) -> None:
    name = _fresh_name()
    response = _send(lab, None, name, "127.0.99.3")
    assert response.rcode() == dns.rcode.REFUSED
    assert lab.resolve(f"{name}.{lab.layout.zone}") == []
