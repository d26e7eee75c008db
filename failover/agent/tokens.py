"""The agent's floor of leaders' fencing tokens: the newest it has seen, in its journal.

A request may carry its leader's token (``X-Failover-Token``, signed with the
rest). Once its signature holds, any request with a token raises the floor,
a read too: a new leader's first status already tells the agent that an
older one is deposed. A request that changes something (every POST but those
in ``READS``) with a token below the floor is refused, and nothing is done.

The check comes before the operation's id is looked up: a deposed leader that
sends an id again (its retry after a lost answer) is refused, not answered
with what its first attempt did. That answer would read as "done, go on", and
the deposed leader would take its next step; refused, it learns it must stop
(the new leader reads the host's state for itself). Polling an operation
(``GET /v1/operations/<id>``) is a read and is answered.

The floor is kept in the journal, so a restart does not forget it. A request
without a token is a lone controller's and is let through, unless the
agent's config says ``require_token`` (every controller is elected).
"""

from __future__ import annotations

from failover.agent.journal import AgentJournal
from failover.exceptions import FailoverError
from failover.leadertoken import parse_token, refuse_older

READS = frozenset({"/v1/backup/info"})  # POSTs that only read


class TokenRequired(FailoverError):
    """A request that changes something came without a token to an agent that requires one."""


class BadToken(FailoverError):
    """A token header that is not a token."""


def changes(method: str, path: str) -> bool:
    """Whether a request may change something (and so is refused with a stale token)."""
    return method == "POST" and path.split("?", 1)[0] not in READS


class TokenFloor:
    """The newest token this agent has seen, and the check of each request against it."""

    def __init__(self, journal: AgentJournal, *, required: bool, site: str) -> None:
        self._journal = journal
        self.required = required
        self._site = site

    def newest(self) -> int | None:
        """The newest token seen (None: never one)."""
        return self._journal.newest_token()

    def admit(self, header: str | None, method: str, path: str) -> int | None:
        """Check a signed request's token (its header, as sent); returns the newest now.

        Raises StaleToken for an older token on a request that changes
        something, TokenRequired for none where one is required, BadToken for
        a header that is not one. A refused request changes nothing but the
        floor, and only a newer token raises that.
        """
        mutating = changes(method, path)
        if header is None:
            if mutating and self.required:
                raise TokenRequired(f"agent {self._site} requires a leader's fencing token "
                                    "(require_token) and this request carries none; nothing "
                                    "was done")
            return self.newest()
        try:
            token = parse_token(header)
        except ValueError as exc:
            raise BadToken(str(exc)) from None
        newest = self._journal.newest_token(token)
        if mutating:
            refuse_older(token, newest, "this agent")
        return newest
