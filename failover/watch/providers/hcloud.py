"""A Hetzner Cloud project, watched through its API (``GET /servers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import requests
from hcloud import APIException, HCloudException
from hcloud import Client as HcloudClient
from pydantic import BaseModel, ConfigDict, Field

from failover.exceptions import ConfigError
from failover.secretfiles import read_private
from failover.watch.providers.answer import ApiAnswer, line, seconds

# An invalid or revoked token, a project that may do nothing, a resource
# locked by Hetzner ("contact support").
HCLOUD_REFUSED = frozenset({"unauthorized", "forbidden", "resource_locked"})
HCLOUD_THROTTLED = frozenset({"rate_limit_exceeded"})
HCLOUD_CALL = "hcloud GET /servers"


class HcloudApiConfig(BaseModel):
    """A site's Hetzner Cloud project, watched through its API (``GET /servers``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["hcloud"]
    endpoint: str = Field("https://api.hetzner.cloud/v1",
                          description="the API's base URL (the lab's fake in the lab)")
    token_file: Path = Field(description="the project's API token, in a 0600 file")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds to connect, and to read")


def hcloud_token(config: HcloudApiConfig) -> str:
    """The project's token from its 0600 file; ConfigError when unreadable or empty."""
    token = read_private(config.token_file, "hcloud token file").strip()
    if not token:
        raise ConfigError(f"token file {config.token_file} is empty")
    return token


def check_hcloud(config: HcloudApiConfig, timeout: float) -> ApiAnswer:
    """One ``GET /servers`` within ``timeout`` s, its outcome sorted into three."""
    try:
        token = hcloud_token(config)
    except ConfigError as exc:
        return ApiAnswer("down", f"{HCLOUD_CALL}: not asked: {exc}", None)
    client = HcloudClient(token=token, api_endpoint=config.endpoint, timeout=timeout,
                          application_name="failover-watch")
    base = client._client  # hcloud has no public way to turn off retries or close a session
    # hcloud retries timeouts and some errors up to 5 times with a backoff of up to
    # a minute; a probe makes one attempt and lets its own interval be the retry.
    base._retry_max_retries = 0
    try:
        servers = client.servers.get_all()
    except APIException as exc:
        return hcloud_error(exc)
    except requests.exceptions.Timeout:
        return ApiAnswer("down", f"{HCLOUD_CALL}: timed out after {seconds(timeout)} at "
                         f"{config.endpoint}", None)
    except requests.exceptions.ConnectionError:
        return ApiAnswer("down", f"{HCLOUD_CALL}: cannot connect to {config.endpoint}", None)
    except (requests.exceptions.RequestException, HCloudException) as exc:
        return ApiAnswer("down", f"{HCLOUD_CALL}: {type(exc).__name__}: {line(exc)}", None)
    finally:
        base._session.close()  # one session per look: close its connections now
    count = len(servers)
    return ApiAnswer("up", f"{HCLOUD_CALL}: {count} server{'' if count == 1 else 's'}", None)


def hcloud_error(exc: APIException) -> ApiAnswer:
    """Hetzner's error answer sorted: credentials refused or blocked, throttled, other."""
    if isinstance(exc.code, int):  # no JSON error body: only the HTTP status to go by
        status, code = exc.code, None
        named = f"HTTP {status}"
        refused, throttled = status in (401, 403), status == 429
    else:
        status, code = None, exc.code
        named = code
        refused, throttled = code in HCLOUD_REFUSED, code in HCLOUD_THROTTLED
    if refused:
        return ApiAnswer("refused", f"{HCLOUD_CALL}: {named} (credentials refused or account "
                         "blocked)", code)
    if throttled:
        return ApiAnswer("down", f"{HCLOUD_CALL}: {named} (throttled)", code)
    if status is not None and status >= 500:
        return ApiAnswer("down", f"{HCLOUD_CALL}: {named} (server error)", code)
    return ApiAnswer("down", f"{HCLOUD_CALL}: {named}: {line(exc)}", code)
