"""How the engine and an agent sign what they send each other.

Requests use the webhook's scheme (``failover.watch.webhook``: timestamp,
HMAC-SHA256, staleness and replay checks) over the method and path as well as
the body, so that a captured ``POST /v1/lease`` cannot be replayed as a
``POST /v1/unfence``, and over a random nonce of the sender's
(``X-Failover-Nonce``): the timestamp is whole seconds, and two equal
requests in one second (a status asked twice, a poll, a retry under the same
operation id) must be two signatures, not one request and its replay. A
leader's fencing token (``X-Failover-Token``, see ``failover.leadertoken``) is
signed too: raised in transit, a deposed leader's request would pass for the
new leader's; a request without one is signed as it always was. An answer is
signed too, over the request's own signature and the answer's
body: a forged "fenced" from something between the two would let the
controller promote beside a live primary.

Why signatures rather than mutual TLS: the controller already signs its
webhook this way, a per-site secret in a 0600 file is the whole setup (no CA,
no certificate to renew on a host that may have to be rebuilt from nothing),
and each request, not only each connection, is checked for age and reuse.
Nothing secret travels in a request; a deployment that wants the traffic
encrypted puts TLS in front (the URL may be https).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from failover.exceptions import ConfigError
from failover.secretfiles import read_private
from failover.watch.webhook import SCHEME, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

OPERATION_HEADER = "X-Failover-Operation"
NONCE_HEADER = "X-Failover-Nonce"  # two identical requests in one second differ by it
TOKEN_HEADER = "X-Failover-Token"  # the sending leader's fencing token, when it has one
OPERATION_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
MAX_BODY_BYTES = 256 * 1024  # an hba file is the largest thing sent
MIN_SECRET_CHARS = 16


def signed_request(method: str, path: str, body: bytes, *, nonce: str, op: str = "",
                   token: str = "") -> bytes:
    """The bytes a request's signature covers: method, path, nonce, operation id, token, body.

    The operation id is signed too: swapped for an older one's, it would make
    the agent answer (signed, for this request) what that older operation did.
    Without a token the bytes are what they were before tokens (an agent or a
    controller of the release before still understands a tokenless request).
    """
    # No field before it may hold "=" or a space (an id is [A-Za-z0-9._-]): unambiguous.
    fenced = f" token={token}" if token else ""
    return f"{method.upper()} {path} {nonce} {op}{fenced}\n".encode() + body


def signed_answer(request_signature: str, body: bytes) -> bytes:
    """The bytes an answer's signature covers: the request's signature and the body."""
    return f"answer {request_signature.strip().lower()}\n".encode() + body


def sign_request(secret: bytes, method: str, path: str, body: bytes,
                 op: str | None = None, token: int | None = None) -> dict[str, str]:
    """The headers that sign a request now, with a fresh nonce (its operation id, its token)."""
    nonce = secrets.token_hex(16)
    sent = "" if token is None else str(token)
    headers = {**sign(secret, signed_request(method, path, body, nonce=nonce, op=op or "",
                                             token=sent)),
               NONCE_HEADER: nonce}
    if op is not None:
        headers[OPERATION_HEADER] = op
    if token is not None:
        headers[TOKEN_HEADER] = sent
    return headers


def sign_answer(secret: bytes, request_signature: str, body: bytes) -> dict[str, str]:
    """The headers that sign an answer to a request."""
    return sign(secret, signed_answer(request_signature, body))


def answer_is_genuine(secret: bytes, request_signature: str, headers: Mapping[str, str],
                      body: bytes) -> bool:
    """Whether an answer was signed by the agent for this very request."""
    stamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "").strip().lower()
    if not stamp.isdigit() or not given.startswith(SCHEME):
        return False
    expected = sign(secret, signed_answer(request_signature, body), timestamp=int(stamp))
    return hmac.compare_digest(given, expected[SIGNATURE_HEADER])


def agent_secret(path: Path) -> bytes:
    """The per-site secret from its 0600 file; refused when too short to sign with."""
    secret = read_private(path, "agent secret file").strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"agent secret file {path} holds {len(secret)} characters; a "
                          f"secret has at least {MIN_SECRET_CHARS} (e.g. from: openssl rand "
                          "-hex 32)")
    return secret.encode()
