"""The TLS terminator in front of a site's moto: its certificate, S3 through it, pgBackRest.

The lab tests start one moto and one terminator of their own (as ``moto@spare``
and ``tls@spare`` of a layout on a subnet no other test uses, on free ports),
stopped by PID at the end whatever happened.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from failover.processes import ProcessRecord, is_alive, spawn, stop
from failover.waiting import wait_for
from infra.lab import moto, tls, tls_terminator
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from tests.conftest import free_port, starts_servers

SUBNET = "127.92"  # this module's own: no lab of other tests sits there
SITE = "spare"
KEY, SECRET = "lab-key", "lab-secret"  # moto's S3 checks no signature


@dataclass(frozen=True)
class Store:
    """A moto and the terminator in front of it, as a lab's site has them."""

    layout: LabLayout
    paths: LabPaths

    @property
    def cert_file(self) -> Path:
        return tls.certificate_files(self.paths, self.layout.address(SITE))[0]

    def s3(self) -> Any:
        """An S3 client over HTTPS through the terminator.

        The certificate itself is its trust anchor: its IP subjectAltName must match.
        """
        return boto3.client("s3", endpoint_url=self.layout.s3_tls_endpoint(SITE),
                            region_name=self.layout.region, aws_access_key_id=KEY,
                            aws_secret_access_key=SECRET, verify=str(self.cert_file))

    def create_bucket(self, name: str) -> None:
        self.s3().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.layout.region})


@pytest.fixture(scope="module")
@starts_servers
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    paths = LabPaths(tmp_path_factory.mktemp("tls-lab"))
    paths.logs.mkdir()
    layout = LabLayout(subnet=SUBNET, moto_port=free_port(), s3_tls_port=free_port())
    tls.write_certificate(paths, layout.address(SITE))
    records: list[ProcessRecord] = []
    try:
        records.append(moto.start(layout, paths, f"moto@{SITE}"))
        records.append(tls.start(layout, paths, f"tls@{SITE}"))
        moto.wait_ready(layout, f"moto@{SITE}")
        tls.wait_ready(layout, f"tls@{SITE}")
        yield Store(layout, paths)
    finally:
        for record in records:
            stop(record)


@pytest.mark.lab
def test_s3_through_the_terminator_checks_the_lab_certificate(store: Store) -> None:
    store.create_bucket("media-tls")
    s3 = store.s3()
    body = os.urandom(3 * 1024 * 1024)  # many reads and writes through the pipe
    s3.put_object(Bucket="media-tls", Key="photo.bin", Body=body)
    assert s3.get_object(Bucket="media-tls", Key="photo.bin")["Body"].read() == body


@pytest.mark.lab
def test_pgbackrest_lists_a_repository_through_the_terminator(
    store: Store, tmp_path: Path
) -> None:
    if shutil.which("pgbackrest") is None:
        pytest.skip("pgbackrest is not installed (scripts/setup.sh installs it)")
    store.create_bucket("backups-tls")
    store.s3().put_object(Bucket="backups-tls", Key="x/archive.info", Body=b"{}")
    config = tmp_path / "pgbackrest.conf"
    config.write_text("")  # not the machine's /etc/pgbackrest.conf
    (tmp_path / "conf.d").mkdir()
    address, port = store.layout.listener(f"tls@{SITE}")
    done = subprocess.run(
        ["pgbackrest", "repo-ls", f"--config={config}", f"--config-include-path={tmp_path}/conf.d",
         "--repo1-type=s3", f"--repo1-s3-endpoint={address}", f"--repo1-storage-port={port}",
         "--repo1-s3-uri-style=path", "--repo1-storage-verify-tls=n",
         "--repo1-s3-bucket=backups-tls", f"--repo1-s3-region={store.layout.region}",
         "--repo1-path=/x", "--log-level-console=warn", f"--log-path={tmp_path}",
         "--io-timeout=5"],
        # Secrets are refused on its command line: pgBackRest reads them from its environment.
        env={**os.environ, "PGBACKREST_REPO1_S3_KEY": KEY,
             "PGBACKREST_REPO1_S3_KEY_SECRET": SECRET},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["archive.info"]


def _tls_connect(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))


def _closed_on(client: socket.socket) -> bool:
    """Whether the server closes the connection after a request, answering nothing."""
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        return client.recv(100) == b""
    except ConnectionResetError:  # closed with our request unread
        return True


@pytest.mark.lab
def test_a_refused_upstream_and_a_failed_handshake_are_one_line_each(tmp_path: Path) -> None:
    cert, key = tls.write_certificate(LabPaths(tmp_path), "127.0.0.1")
    port, nobody = free_port(), free_port()  # nothing listens on `nobody`
    log = tmp_path / "tls.log"
    argv = [sys.executable, "-m", "infra.lab.tls_terminator", "--listen", f"127.0.0.1:{port}",
            "--upstream", f"127.0.0.1:{nobody}", "--cert", str(cert), "--key", str(key)]
    record = spawn("tls@test", argv, log=log)
    try:
        wait_for(lambda: tls.handshake("127.0.0.1", port, timeout=1.0), timeout=30,
                 what="the terminator to answer TLS", retry_on=OSError)
        with _tls_connect(port) as client:
            assert _closed_on(client)  # no upstream to answer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            assert _closed_on(plain)  # no TLS at all

        def lines() -> list[str]:
            return log.read_text().splitlines()

        wait_for(lambda: any("TLS handshake with 127.0.0.1:" in line for line in lines()),
                 timeout=10, what="the failed handshake in the log", retry_on=())
        first, *errors = lines()
        assert first.startswith(f"tls: listening on 127.0.0.1:{port}")
        refusals = [line for line in errors if f"upstream 127.0.0.1:{nobody}: " in line]
        handshakes = [line for line in errors if "TLS handshake with 127.0.0.1:" in line]
        # One line per error, none per connection. The readiness check's connection
        # is refused too, or, closed at once, ends in the handshake: one line either way.
        assert refusals and handshakes, errors
        assert len(errors) == len(refusals) + len(handshakes) == 3, errors
        assert is_alive(record)
    finally:
        stop(record)


def test_the_certificate_names_the_address_and_its_key_is_private(tmp_path: Path) -> None:
    cert_file, key_file = tls.write_certificate(LabPaths(tmp_path), "127.92.30.1")
    assert (cert_file.name, key_file.name) == ("tls-127.92.30.1.crt", "tls-127.92.30.1.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # pgBackRest matches DNS names only, Python's ssl IP addresses for an IP: both are there.
    assert names.get_values_for_type(x509.DNSName) == ["127.92.30.1"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.92.30.1")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "127.92.30.1"
    assert cert.issuer == cert.subject
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=30) <= lifetime <= timedelta(days=31)
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_the_terminator_names_what_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = ["--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:2",
               "--cert", str(tmp_path / "none.crt"), "--key", str(tmp_path / "none.key")]
    assert tls_terminator.main(missing) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tls: cannot load certificate {tmp_path / 'none.crt'}")
    assert len(err.splitlines()) == 1

    with pytest.raises(SystemExit):
        tls_terminator.main(["--listen", "127.0.0.1", *missing[2:]])
    assert "'127.0.0.1': give ADDRESS:PORT" in capsys.readouterr().err

    cert, key = tls.write_certificate(LabPaths(tmp_path), "127.0.0.1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert tls_terminator.main(["--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.1:2",
                         "--cert", str(cert), "--key", str(key)]) == 1
    assert f"tls: cannot listen on 127.0.0.1:{port}: " in capsys.readouterr().err
