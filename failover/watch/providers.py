"""One look at a provider's API: is the account there, out of reach, or refusing us?

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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
import requests
from botocore.config import Config
from hcloud import APIException, HCloudException
from hcloud import Client as HcloudClient

from failover.aws import load_credentials
from failover.config import Ec2ApiConfig, HcloudApiConfig
from failover.exceptions import ConfigError
from failover.secretfiles import read_private
from failover.watch.signals import Status

# EC2's answers to credentials it will not take, or to an account it has shut
# (AWS's "Common client errors" for EC2; InvalidClientTokenId and
# SignatureDoesNotMatch are the same refusal from the query APIs' common set).
EC2_REFUSED = frozenset({
    "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnauthorizedOperation",
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "Blocked", "OptInRequired",
    "PendingVerification", "AccountDisabled",
})
EC2_THROTTLED = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
# Hetzner Cloud: an invalid or revoked token, a project that may do nothing, a
# resource locked by Hetzner ("contact support").
HCLOUD_REFUSED = frozenset({"unauthorized", "forbidden", "resource_locked"})
HCLOUD_THROTTLED = frozenset({"rate_limit_exceeded"})
EC2_CALL = "EC2 DescribeInstances"
HCLOUD_CALL = "hcloud GET /servers"


@dataclass(frozen=True)
class ApiAnswer:
    """What one look at a provider's API found."""

    status: Status  # up | down (unreachable, slow, 5xx, throttled) | refused (credentials, block)
    detail: str  # one line, e.g. "EC2 DescribeInstances: AuthFailure (credentials refused)"
    code: str | None  # the provider's error code, if it gave one


def check_api(config: Ec2ApiConfig | HcloudApiConfig, timeout: float) -> ApiAnswer:
    """Ask the provider's API one read-only question within ``timeout`` s; never raises."""
    try:
        if isinstance(config, Ec2ApiConfig):
            return _check_ec2(config, timeout)
        return _check_hcloud(config, timeout)
    except Exception as exc:  # a probe reports, it never takes the controller down
        call = EC2_CALL if isinstance(config, Ec2ApiConfig) else HCLOUD_CALL
        return ApiAnswer("down", f"{call}: {type(exc).__name__}: {_line(exc)}", None)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:200] if text else type(exc).__name__)


def _seconds(value: float) -> str:
    return f"{value:g}s"


# -- EC2 ----------------------------------------------------------------------

# boto3's default session is not safe to build clients from in several threads
# at once, and a client is costly to build (its service model): build them
# under a lock, and keep one per endpoint, key and timeout.
_EC2_LOCK = threading.Lock()
_EC2_CLIENTS: dict[tuple[Any, ...], Any] = {}
_EC2_CACHE_SIZE = 16


def _ec2_client(config: Ec2ApiConfig, creds: dict[str, str] | None, timeout: float) -> Any:
    key = (config.endpoint_url, config.region, timeout,
           tuple(sorted(creds.items())) if creds else None)
    with _EC2_LOCK:
        client = _EC2_CLIENTS.get(key)
        if client is None:
            if len(_EC2_CLIENTS) >= _EC2_CACHE_SIZE:  # old keys after rotations
                _EC2_CLIENTS.clear()
            creds = creds or {}
            client = boto3.session.Session().client(
                "ec2", endpoint_url=config.endpoint_url, region_name=config.region,
                aws_access_key_id=creds.get("aws_access_key_id"),
                aws_secret_access_key=creds.get("aws_secret_access_key"),
                aws_session_token=creds.get("aws_session_token"),
                config=Config(connect_timeout=timeout, read_timeout=timeout,
                              retries={"total_max_attempts": 1}),
            )
            _EC2_CLIENTS[key] = client
        return client


def _check_ec2(config: Ec2ApiConfig, timeout: float) -> ApiAnswer:
    creds = None
    if config.credentials_file is not None:
        try:
            creds = load_credentials(config.credentials_file)
        except ConfigError as exc:
            return ApiAnswer("down", f"{EC2_CALL}: not asked: {exc}", None)
    where = config.endpoint_url or f"EC2 in {config.region}"
    try:
        answer = _ec2_client(config, creds, timeout).describe_instances(MaxResults=5)
    except botocore.exceptions.ClientError as exc:
        return _ec2_error(exc)
    except botocore.exceptions.NoCredentialsError:
        return ApiAnswer("down", f"{EC2_CALL}: not asked: no AWS credentials found", None)
    except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
        return ApiAnswer("down", f"{EC2_CALL}: timed out after {_seconds(timeout)} at {where}",
                         None)
    except botocore.exceptions.EndpointConnectionError:
        return ApiAnswer("down", f"{EC2_CALL}: cannot connect to {where}", None)
    except (botocore.exceptions.ConnectionClosedError, botocore.exceptions.HTTPClientError) \
            as exc:
        return ApiAnswer("down", f"{EC2_CALL}: connection failed at {where}: {_line(exc)}",
                         None)
    count = sum(len(r.get("Instances", [])) for r in answer.get("Reservations", []))
    more = "+" if answer.get("NextToken") else ""
    return ApiAnswer("up", f"{EC2_CALL}: {count}{more} instance{'' if count == 1 else 's'}",
                     None)


def _ec2_error(exc: botocore.exceptions.ClientError) -> ApiAnswer:
    error = exc.response.get("Error", {})
    code = error.get("Code") or None
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    named = f"{code or f'HTTP {status}'}"
    if code in EC2_REFUSED:
        return ApiAnswer("refused", f"{EC2_CALL}: {named} (credentials refused)", code)
    if code in EC2_THROTTLED or status == 429:
        return ApiAnswer("down", f"{EC2_CALL}: {named} (throttled)", code)
    if isinstance(status, int) and status >= 500:
        return ApiAnswer("down", f"{EC2_CALL}: {named} (server error, HTTP {status})", code)
    return ApiAnswer("down", f"{EC2_CALL}: {named}: {_line(exc)}", code)


# -- Hetzner Cloud --------------------------------------------------------------


def _check_hcloud(config: HcloudApiConfig, timeout: float) -> ApiAnswer:
    try:
        token = read_private(config.token_file, "hcloud token file").strip()
    except ConfigError as exc:
        return ApiAnswer("down", f"{HCLOUD_CALL}: not asked: {exc}", None)
    if not token:
        return ApiAnswer("down", f"{HCLOUD_CALL}: not asked: token file "
                         f"{config.token_file} is empty", None)
    client = HcloudClient(token=token, api_endpoint=config.endpoint, timeout=timeout,
                          application_name="failover-watch")
    base = client._client  # hcloud has no public way to turn off retries or close a session
    # hcloud retries timeouts and some errors up to 5 times with a backoff of up to
    # a minute; a probe makes one attempt and lets its own interval be the retry.
    base._retry_max_retries = 0
    try:
        servers = client.servers.get_all()
    except APIException as exc:
        return _hcloud_error(exc)
    except requests.exceptions.Timeout:
        return ApiAnswer("down", f"{HCLOUD_CALL}: timed out after {_seconds(timeout)} at "
                         f"{config.endpoint}", None)
    except requests.exceptions.ConnectionError:
        return ApiAnswer("down", f"{HCLOUD_CALL}: cannot connect to {config.endpoint}", None)
    except (requests.exceptions.RequestException, HCloudException) as exc:
        return ApiAnswer("down", f"{HCLOUD_CALL}: {type(exc).__name__}: {_line(exc)}", None)
    finally:
        base._session.close()  # one session per look: close its connections now
    count = len(servers)
    return ApiAnswer("up", f"{HCLOUD_CALL}: {count} server{'' if count == 1 else 's'}", None)


def _hcloud_error(exc: APIException) -> ApiAnswer:
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
    return ApiAnswer("down", f"{HCLOUD_CALL}: {named}: {_line(exc)}", code)
