"""An AWS account, watched through the EC2 API (``DescribeInstances``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import botocore.exceptions
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from failover.aws import load_credentials
from failover.awssession import session
from failover.exceptions import ConfigError
from failover.watch.providers.answer import ApiAnswer, line, seconds

# EC2's answers to credentials it will not take, or to an account it has shut
# (AWS's "Common client errors" for EC2; InvalidClientTokenId and
# SignatureDoesNotMatch are the same refusal from the query APIs' common set).
EC2_REFUSED = frozenset({
    "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnauthorizedOperation",
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "Blocked", "OptInRequired",
    "PendingVerification", "AccountDisabled",
})
EC2_THROTTLED = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
EC2_CALL = "EC2 DescribeInstances"


class Ec2ApiConfig(BaseModel):
    """A site's AWS account, watched through the EC2 API (``DescribeInstances``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ec2"]
    endpoint_url: str | None = Field(None, description="another endpoint (moto in the lab)")
    region: str = "us-east-1"
    credentials_file: Path | None = Field(
        None, description="AWS shared-credentials file, mode 0600; default: boto3's chain",
    )
    timeout: float = Field(5.0, gt=0, le=120, description="seconds to connect, and to read")


# boto3's default session is not safe to build clients from in several threads
# at once, and a client is costly to build (its service model): build them
# under a lock, and keep one per endpoint, key and timeout.
_EC2_LOCK = threading.Lock()
_EC2_CLIENTS: dict[tuple[Any, ...], Any] = {}
_EC2_CACHE_SIZE = 16


def ec2_client(config: Ec2ApiConfig, creds: dict[str, str] | None, timeout: float,
               attempts: int = 1, operations: tuple[str, ...] = ()) -> Any:
    """A cached EC2 client of the account ``config`` names (``attempts`` per call).

    With ``operations``, a client of those only (``failover.awssession``: EC2's
    whole model costs a process some 20 MiB, the check's one operation little).
    """
    key = (config.endpoint_url, config.region, timeout, attempts, operations,
           tuple(sorted(creds.items())) if creds else None)
    with _EC2_LOCK:
        client = _EC2_CLIENTS.get(key)
        if client is None:
            if len(_EC2_CLIENTS) >= _EC2_CACHE_SIZE:  # old keys after rotations
                _EC2_CLIENTS.clear()
            creds = creds or {}
            client = session(operations).client(  # botocore's data read once (awssession)
                "ec2", endpoint_url=config.endpoint_url, region_name=config.region,
                aws_access_key_id=creds.get("aws_access_key_id"),
                aws_secret_access_key=creds.get("aws_secret_access_key"),
                aws_session_token=creds.get("aws_session_token"),
                config=Config(connect_timeout=timeout, read_timeout=timeout,
                              retries={"mode": "standard", "total_max_attempts": attempts}),
            )
            _EC2_CLIENTS[key] = client
        return client


def check_ec2(config: Ec2ApiConfig, timeout: float) -> ApiAnswer:
    """One ``DescribeInstances`` within ``timeout`` s, its outcome sorted into three."""
    creds = None
    if config.credentials_file is not None:
        try:
            creds = load_credentials(config.credentials_file)
        except ConfigError as exc:
            return ApiAnswer("down", f"{EC2_CALL}: not asked: {exc}", None)
    where = config.endpoint_url or f"EC2 in {config.region}"
    try:
        answer = ec2_client(config, creds, timeout, operations=("DescribeInstances",)) \
            .describe_instances(MaxResults=5)
    except botocore.exceptions.ClientError as exc:
        return ec2_error(exc)
    except botocore.exceptions.NoCredentialsError:
        return ApiAnswer("down", f"{EC2_CALL}: not asked: no AWS credentials found", None)
    except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
        return ApiAnswer("down", f"{EC2_CALL}: timed out after {seconds(timeout)} at {where}",
                         None)
    except botocore.exceptions.EndpointConnectionError:
        return ApiAnswer("down", f"{EC2_CALL}: cannot connect to {where}", None)
    except (botocore.exceptions.ConnectionClosedError, botocore.exceptions.HTTPClientError) \
            as exc:
        return ApiAnswer("down", f"{EC2_CALL}: connection failed at {where}: {line(exc)}",
                         None)
    count = sum(len(r.get("Instances", [])) for r in answer.get("Reservations", []))
    more = "+" if answer.get("NextToken") else ""
    return ApiAnswer("up", f"{EC2_CALL}: {count}{more} instance{'' if count == 1 else 's'}",
                     None)


def ec2_error(exc: botocore.exceptions.ClientError) -> ApiAnswer:
    """EC2's error answer sorted: credentials refused, throttled, a server error, other."""
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
    return ApiAnswer("down", f"{EC2_CALL}: {named}: {line(exc)}", code)
