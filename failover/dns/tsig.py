"""TSIG keys in BIND's key-file format, as ``tsig-keygen`` writes them.

The same file is included by BIND and read by our RFC 2136 client, so there
is one secret and one format. Key files must not be readable by group or
others: a looser file is refused rather than used.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from failover.exceptions import ConfigError
from failover.secretfiles import read_private, write_private

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")

_KEY_RE = re.compile(
    r'key\s+"?(?P<name>[A-Za-z0-9._-]+)"?\s*\{\s*'
    r"algorithm\s+\"?(?P<algorithm>[a-z0-9-]+)\"?\s*;\s*"
    r'secret\s+"(?P<secret>[A-Za-z0-9+/=]+)"\s*;\s*\}\s*;',
)


@dataclass(frozen=True)
class TsigKey:
    """A named shared secret for signing DNS messages."""

    name: str
    algorithm: str
    secret: str  # base64, as in the key file

    def __repr__(self) -> str:  # never print the secret
        return f"TsigKey(name={self.name!r}, algorithm={self.algorithm!r})"

    @classmethod
    def generate(cls, name: str, algorithm: str = "hmac-sha256") -> TsigKey:
        """Make a fresh random key (32 bytes, like tsig-keygen's hmac-sha256)."""
        return cls(name, algorithm, base64.b64encode(secrets.token_bytes(32)).decode())

    def to_bind(self) -> str:
        """The key as a BIND ``key`` clause."""
        return (
            f'key "{self.name}" {{\n'
            f"\talgorithm {self.algorithm};\n"
            f'\tsecret "{self.secret}";\n'
            "};\n"
        )

    @classmethod
    def parse(cls, text: str, source: str = "key file") -> TsigKey:
        """Read the first ``key`` clause of a BIND key file."""
        match = _KEY_RE.search(text)
        if match is None:
            raise ConfigError(
                f"{source}: no TSIG key found; expected "
                '\'key "NAME" { algorithm hmac-sha256; secret "BASE64"; };\' '
                "as written by tsig-keygen"
            )
        algorithm = match["algorithm"]
        if algorithm not in ALGORITHMS:
            raise ConfigError(
                f"{source}: TSIG algorithm {algorithm!r} is not supported; "
                f"use one of {', '.join(ALGORITHMS)}"
            )
        return cls(match["name"], algorithm, match["secret"])

    @classmethod
    def load(cls, path: Path) -> TsigKey:
        """Read a key file, refusing one that group or others can read."""
        return cls.parse(read_private(path, "TSIG key file"), str(path))

    def save(self, path: Path, owner: tuple[int, int] | None = None) -> None:
        """Write the key file with mode 0600 (and the given uid/gid)."""
        write_private(path, self.to_bind(), owner)
