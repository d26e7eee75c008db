"""The lab's hold on its FAKE Hetzner Cloud APIs (``hcloud@hetzner``, ``hcloud@spare``).

Start, wait, block. The fake (``infra.lab.hcloud_fake``) keeps its project in
memory. At hetzner, the site's server (``hetzner-app``, public IPv4 = the
site's address) is created by the command line at every start, and a
restarted fake is a fresh, unblocked project with the same token. At spare,
the project starts empty: a rebuild makes the site's server there, whose
primary IPv4 is the spare site's address and whose cloud-config the fake
boots under the lab's state dir (its agent recorded in ``servers/``, where
``lab down`` finds it); a restarted spare fake adopts those servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from failover.processes import ProcessRecord, spawn
from failover.waiting import wait_for
from infra.lab.layout import HCLOUD_PART, HCLOUD_SITE, HCLOUD_SPARE_PART, SPARE_SITE, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.prefork import Part
from infra.lab.secrets import (
    LabSecrets,
    hcloud_admin_token_file,
    hcloud_spare_admin_token_file,
    hcloud_spare_token_file,
    hcloud_token_file,
)


def server_name(site: str = HCLOUD_SITE) -> str:
    """The name of the site's one server in the fake project."""
    return f"{site}-app"


@dataclass(frozen=True)
class _Fake:
    """Where one fake's tokens are."""

    token_file: Callable[[LabPaths], Path]
    admin_token_file: Callable[[LabPaths], Path]
    admin_token: Callable[[LabSecrets], str]
    servers: int  # the fake's servers once it answers


_FAKES = {
    HCLOUD_PART: _Fake(hcloud_token_file, hcloud_admin_token_file,
                       lambda secrets: secrets.hcloud_admin_token, 1),
    HCLOUD_SPARE_PART: _Fake(hcloud_spare_token_file, hcloud_spare_admin_token_file,
                             lambda secrets: secrets.hcloud_spare_admin_token, 0),
}


def endpoint(layout: LabLayout, part: str = HCLOUD_PART) -> str:
    """A fake's API base URL (hcloud's ``api_endpoint``)."""
    address, port = layout.listener(part)
    return f"http://{address}:{port}/v1"


def token_file(paths: LabPaths, part: str = HCLOUD_PART) -> Path:
    """The file of a fake's project token."""
    return _FAKES[part].token_file(paths)


def server(layout: LabLayout, paths: LabPaths, part: str = HCLOUD_PART) -> Part:
    """What a fake runs: hetzner's with its running server, spare's empty and able to boot."""
    address, port = layout.listener(part)
    args = ["--host", address, "--port", str(port), "--token-file", str(token_file(paths, part)),
            "--admin-token-file", str(_FAKES[part].admin_token_file(paths))]
    if part == HCLOUD_SPARE_PART:
        args += ["--root", str(paths.root), "--address-pool", layout.address(SPARE_SITE)]
    else:
        args += ["--server", f"{server_name()}={layout.address(HCLOUD_SITE)}"]
    return Part(part, "infra.lab.hcloud_fake", tuple(args), str(paths.log(part)))


def start(layout: LabLayout, paths: LabPaths, part: str = HCLOUD_PART) -> ProcessRecord:
    """Start a fake: hetzner's with its running server, spare's empty and able to boot."""
    return spawn(part, server(layout, paths, part).argv, log=paths.log(part))


def _control(
    layout: LabLayout, secrets: LabSecrets, method: str, what: str, timeout: float,
    part: str = HCLOUD_PART,
) -> dict[str, Any]:
    address, port = layout.listener(part)
    response = httpx.request(
        method, f"http://{address}:{port}/_fake/{what}", timeout=timeout,
        headers={"Authorization": f"Bearer {_FAKES[part].admin_token(secrets)}"},
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def fake_state(layout: LabLayout, secrets: LabSecrets, timeout: float = 2.0,
               part: str = HCLOUD_PART) -> dict[str, Any]:
    """What a fake says of its project: ``blocked``, how many ``servers`` and ``actions``."""
    return _control(layout, secrets, "GET", "state", timeout, part)


def wait_ready(layout: LabLayout, secrets: LabSecrets, timeout: float = 30.0,
               part: str = HCLOUD_PART) -> None:
    """Wait until a fake answers its control (hetzner's: with the site's server in place)."""
    # Not listening yet is "not yet"; a refused admin token is not.
    wait_for(lambda: fake_state(layout, secrets, 1.0, part)["servers"] >= _FAKES[part].servers,
             timeout=timeout, what=f"{part} to answer", retry_on=httpx.TransportError)


def block(layout: LabLayout, secrets: LabSecrets, timeout: float = 5.0,
          part: str = HCLOUD_PART) -> str:
    """Block the project: every API call is refused (403 forbidden). Returns a sentence."""
    return _set_blocked(layout, secrets, True, timeout, part)


def unblock(layout: LabLayout, secrets: LabSecrets, timeout: float = 5.0,
            part: str = HCLOUD_PART) -> str:
    """Lift the block: the project's token works again. Returns a sentence."""
    return _set_blocked(layout, secrets, False, timeout, part)


def _set_blocked(layout: LabLayout, secrets: LabSecrets, blocked: bool, timeout: float,
                 part: str) -> str:
    if fake_state(layout, secrets, timeout, part)["blocked"] == blocked:
        return f"{part}: the project was {'blocked' if blocked else 'not blocked'} already"
    _control(layout, secrets, "POST", "block" if blocked else "unblock", timeout, part)
    return (f"{part}: project blocked, every API call now refused (403 forbidden)" if blocked
            else f"{part}: project unblocked, its token works again")
