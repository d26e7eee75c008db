"""TSIG key files: the format BIND writes and reads, kept private."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.dns.tsig import TsigKey
from failover.exceptions import ConfigError

TSIG_KEYGEN_OUTPUT = """key "ddns-key.example.org" {
\talgorithm hmac-sha256;
\tsecret "x7aGTEJtOQ9wG1b1dnw2tWr3ha6Ad3Kr5ptFnT5qKyU=";
};
"""


def test_reads_what_tsig_keygen_writes() -> None:
    key = TsigKey.parse(TSIG_KEYGEN_OUTPUT)
    assert key.name == "ddns-key.example.org"
    assert key.algorithm == "hmac-sha256"
    assert key.secret == "x7aGTEJtOQ9wG1b1dnw2tWr3ha6Ad3Kr5ptFnT5qKyU="


def test_round_trip_through_a_private_file(tmp_path: Path) -> None:
    key = TsigKey.generate("lab-key.")
    path = tmp_path / "tsig.key"
    key.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert TsigKey.load(path) == key


def test_repr_hides_the_secret() -> None:
    key = TsigKey.generate("k.")
    assert key.secret not in repr(key)


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tsig.key"
    TsigKey.generate("k.").save(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others.*chmod 600"):
        TsigKey.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "no TSIG key found"),
        ('key "k" { algorithm hmac-md5; secret "abcd"; };', "hmac-md5.*not supported"),
    ],
)
def test_malformed_keys_are_explained(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TsigKey.parse(text)
