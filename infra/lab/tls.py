"""TLS in front of a site's object store (``tls@<site>``), for pgBackRest's S3 client.

pgBackRest reaches S3 over TLS only, and moto's own ``--ssl`` closes its
connections without a TLS close_notify, which pgBackRest takes for a
truncated answer ("TLS error ... unexpected eof"). asyncio's TLS transport
sends one, so a small terminator sits in front of each site's plain-HTTP
moto: it accepts TLS on the site's ``s3_tls_port`` and pipes the bytes,
unchanged, to moto. Its certificate is self-signed, made at every ``lab up``
for the site's address as a DNS name and as an IP address (pgBackRest
matches DNS names only), and never leaves the lab's state dir.

The terminator itself is ``infra.lab.tls_terminator`` (standard library
only, so that each of the three stays a small process); this module makes
its certificate, starts it for a site and waits for it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from failover.processes import ProcessRecord, spawn
from failover.secretfiles import write_private
from failover.waiting import wait_for
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.prefork import Part

CERT_DAYS = 30  # a lab lives hours; a fresh certificate is made at every `lab up`


# -- the certificate ------------------------------------------------------------------


def certificate_files(paths: LabPaths, address: str) -> tuple[Path, Path]:
    """Where the certificate and key for ``address`` live: ``secrets/tls-<address>.crt|.key``."""
    return paths.secrets / f"tls-{address}.crt", paths.secrets / f"tls-{address}.key"


def write_certificate(paths: LabPaths, address: str) -> tuple[Path, Path]:
    """Make a self-signed certificate and key for ``address``; returns their files.

    The name is both a DNS name and an IP address in subjectAltName, so that
    clients that match only DNS names (pgBackRest) and clients that match IP
    addresses (Python's ssl) accept it. The key is 0600.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client whose clock is a little behind
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(address), x509.IPAddress(ipaddress.ip_address(address)),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = certificate_files(paths, address)
    paths.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(key_file, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode())
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


# -- the lab's hold on it ---------------------------------------------------------------


def _upstream_part(part: str) -> str:
    """The moto part a ``tls@<site>`` part stands in front of."""
    kind, _, site = part.partition("@")
    if kind != "tls" or not site:
        raise ValueError(f"{part!r} is no TLS terminator's part (tls@<site>)")
    return f"moto@{site}"


def server(layout: LabLayout, paths: LabPaths, part: str) -> Part:
    """What a part (``tls@<site>``) runs: the terminator, with the certificate of its address."""
    address, port = layout.listener(part)
    upstream, upstream_port = layout.listener(_upstream_part(part))
    cert_file, key_file = certificate_files(paths, address)
    return Part(part, "infra.lab.tls_terminator",
                ("--listen", f"{address}:{port}", "--upstream", f"{upstream}:{upstream_port}",
                 "--cert", str(cert_file), "--key", str(key_file)), str(paths.log(part)))


def start(layout: LabLayout, paths: LabPaths, part: str) -> ProcessRecord:
    """Start the terminator of a part (``tls@<site>``) with the certificate of its address."""
    return spawn(part, server(layout, paths, part).argv, log=paths.log(part))


def handshake(address: str, port: int, timeout: float) -> bool:
    """Whether a TLS handshake with ``address:port`` succeeds (the certificate is not checked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a readiness check: the lab's own self-signed cert
    with socket.create_connection((address, port), timeout=timeout) as raw, \
            context.wrap_socket(raw):
        return True


def wait_ready(layout: LabLayout, part: str, timeout: float = 30.0) -> None:
    """Wait until a part's terminator completes a TLS handshake."""
    address, port = layout.listener(part)
    wait_for(lambda: handshake(address, port, timeout=1.0), timeout=timeout,
             what=f"{part} to answer TLS", retry_on=OSError)  # ssl.SSLError is an OSError
