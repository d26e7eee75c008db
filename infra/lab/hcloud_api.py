"""The lab's hold on ``hcloud@hetzner``, its FAKE Hetzner Cloud API: start, wait, block.

The fake (``infra.lab.hcloud_fake``) keeps its project in memory, so the
hetzner site's server (``hetzner-app``, public IPv4 = the site's address) is
created by the command line at every start, and a restarted fake is a fresh,
unblocked project with the same token.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from failover.processes import ProcessRecord, spawn
from failover.waiting import wait_for
from infra.lab.layout import HCLOUD_PART, HCLOUD_SITE, LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets, hcloud_admin_token_file, hcloud_token_file


def server_name(site: str = HCLOUD_SITE) -> str:
    """The name of the site's one server in the fake project."""
    return f"{site}-app"


def _control_url(layout: LabLayout) -> str:
    address, port = layout.listener(HCLOUD_PART)
    return f"http://{address}:{port}/_fake"


def start(layout: LabLayout, paths: LabPaths) -> ProcessRecord:
    """Start the fake at the hetzner site, with one running server whose IPv4 is the site's."""
    address, port = layout.listener(HCLOUD_PART)
    argv = [
        sys.executable, "-m", "infra.lab.hcloud_fake", "--host", address, "--port", str(port),
        "--token-file", str(hcloud_token_file(paths)),
        "--admin-token-file", str(hcloud_admin_token_file(paths)),
        "--server", f"{server_name()}={layout.address(HCLOUD_SITE)}",
    ]
    return spawn(HCLOUD_PART, argv, log=paths.log(HCLOUD_PART))


def _control(
    layout: LabLayout, secrets: LabSecrets, method: str, what: str, timeout: float
) -> dict[str, Any]:
    response = httpx.request(
        method, f"{_control_url(layout)}/{what}", timeout=timeout,
        headers={"Authorization": f"Bearer {secrets.hcloud_admin_token}"},
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def fake_state(layout: LabLayout, secrets: LabSecrets, timeout: float = 2.0) -> dict[str, Any]:
    """What the fake says of its project: ``blocked``, how many ``servers`` and ``actions``."""
    return _control(layout, secrets, "GET", "state", timeout)


def wait_ready(layout: LabLayout, secrets: LabSecrets, timeout: float = 30.0) -> None:
    """Wait until the fake answers its control with the site's server in place."""
    # Not listening yet is "not yet"; a refused admin token is not.
    wait_for(lambda: fake_state(layout, secrets, timeout=1.0)["servers"] >= 1,
             timeout=timeout, what=f"{HCLOUD_PART} to answer", retry_on=httpx.TransportError)


def block(layout: LabLayout, secrets: LabSecrets, timeout: float = 5.0) -> str:
    """Block the project: every API call is refused (403 forbidden). Returns a sentence."""
    was = fake_state(layout, secrets, timeout)["blocked"]
    _control(layout, secrets, "POST", "block", timeout)
    return (f"{HCLOUD_PART}: the project was blocked already" if was else
            f"{HCLOUD_PART}: project blocked, every API call now refused (403 forbidden)")


def unblock(layout: LabLayout, secrets: LabSecrets, timeout: float = 5.0) -> str:
    """Lift the block: the project's token works again. Returns a sentence."""
    was = fake_state(layout, secrets, timeout)["blocked"]
    _control(layout, secrets, "POST", "unblock", timeout)
    return (f"{HCLOUD_PART}: project unblocked, its token works again" if was else
            f"{HCLOUD_PART}: the project was not blocked")
