"""A leader's fencing token: an integer that only grows from one leader to the next.

With a cluster of controllers the token is the ``create_revision`` of the
leader's key in etcd, which a later leader's is always above. What takes
writes from a leader (a site's agent, the run journal) keeps the newest token
it has seen and refuses a write that carries an older one, so that the late
request of a deposed leader changes nothing (the fencing token of Chubby's
sequencers and of Kleppmann's "How to do distributed locking"). A write
without a token is a lone controller's, with no election, and goes through
as before (unless an agent's config requires a token).

A writer holds a ``TokenSource``, a callable asked at each write, so that a
controller that becomes leader changes the token of clients it already has.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from failover.exceptions import StaleToken

TokenSource = Callable[[], int | None]
# etcd's revisions are int64; 18 digits keep any token in one, parsed or stored.
_TOKEN = re.compile(r"[0-9]{1,18}")


def no_token() -> int | None:
    """The token of a controller that is not elected: none."""
    return None


def parse_token(text: str) -> int:
    """A token as sent (decimal digits); ValueError names what is wrong."""
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"a fencing token is 1 to 18 decimal digits, not {text[:40]!r}")
    return int(text)


def refuse_older(token: int, newest: int | None, holder: str) -> None:
    """Raise StaleToken when ``token`` is below ``newest`` (the newest ``holder`` has seen).

    Equal passes: it is the same leader's, sending again.
    """
    if newest is not None and token < newest:
        raise StaleToken(token, newest, holder)
