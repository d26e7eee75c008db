"""Patroni's failsafe for the primary's lease: when etcd is out of reach, ask every peer.

The problem (Patroni's, which its ``failsafe_mode`` answers): etcd is
unreachable while every site is healthy (etcd itself broken, its quota
alarm, a bad upgrade). A primary that cannot renew its lease fences itself,
and an outage of etcd becomes an outage of the service.

Our choice: the primary's agent, when it cannot reach etcd, keeps its server
unfenced only while every other site's agent (``cluster.peers``) answers a
signed round that it vouches for it: its own server is no primary, cannot
start as one (it is a standby, or down on a standby's data), and no promote
has asked it to vouch for this primary no more. One peer that does not
answer, or says no, and the primary fences at its lease's end, as without
failsafe. A round keeps it sure for the lease's TTL from when it was sent;
it never lifts a fence (only etcd gives the lease back).

Why it is safe: a standby becomes a primary only by a controller's promote,
and no controller promotes without etcd (the leader key and the decision
live there). A promote that reaches etcd first takes the decision from the
old primary and tells the other agents to vouch for it no more (``withhold``,
by the revision of its grant), then waits until the last vouch any of them
gave has run out (``failover.cluster.primarylease``): since a round needs
every peer, one peer that withholds ends them all. A peer that answers "no
primary here" now cannot become one before that wait is over.

Why on by default: the etcd members live at the sites; etcd failing while the
sites stand is etcd's own fault, and fencing then turns it into a full
outage, which is what the issue asks to avoid. It costs availability
nothing and adds one request per peer per renewal while etcd is gone.

The rounds are signed with a secret the agents share (``peer_secret_file``),
not with a site's controller secret: a host that holds it can ask a peer to
vouch and nothing more, while the controller's secret commands an agent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from failover.agent.journal import AgentJournal
from failover.exceptions import FailoverError

FAILSAFE_PATH = "/v1/failsafe"  # a round's request, signed with the peers' secret
WITHHOLD_KIND = "failsafe/withhold"  # the controller's operation: vouch for a primary no more
_VOUCHED = "failsafe.vouched."  # + site: {"at": Unix seconds, "ttl": seconds}
_WITHHELD = "failsafe.withheld."  # + site: the highest grant revision refused
Body = dict[str, Any]


class BadVouchRequest(FailoverError):
    """A round's request or a withhold whose body is not what it takes."""


@dataclass(frozen=True)
class Answer:
    """One peer's answer to a round."""

    site: str
    vouched: bool
    why: str = ""  # why not


@dataclass(frozen=True)
class Round:
    """A failsafe round: every peer's answer."""

    answers: tuple[Answer, ...]

    @property
    def vouched(self) -> bool:
        """Whether every peer vouched (a round with no peer vouches for nothing)."""
        return bool(self.answers) and all(a.vouched for a in self.answers)

    def sentence(self) -> str:
        """Who vouched, who did not and why."""
        if not self.answers:
            return "no peer to ask"
        return "; ".join(f"{a.site} vouched" if a.vouched else f"{a.site} did not ({a.why})"
                         for a in self.answers)


Ask = Callable[[str, Body, float], Body]  # (site, body, timeout) -> the peer's answer


def ask_peers(peers: Mapping[str, Ask], body: Body, timeout: float) -> Round:
    """One round: every peer asked at once; each answer within ``timeout`` or a no."""
    def one(site: str) -> Answer:
        try:
            said = peers[site](site, body, timeout)
        except FailoverError as exc:
            return Answer(site, False, " ".join(str(exc).split())[:160])
        if said.get("vouch") is True:
            return Answer(site, True)
        return Answer(site, False, str(said.get("why") or "no")[:160])

    if not peers:
        return Round(())
    with ThreadPoolExecutor(max_workers=len(peers), thread_name_prefix="failsafe") as pool:
        return Round(tuple(pool.map(one, sorted(peers))))


def _site(body: Body, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > 32:
        raise BadVouchRequest(f"{field} must be a site's name")
    return value


def _count(body: Body, field: str, low: int) -> int:
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BadVouchRequest(f"{field} must be a whole number from {low}")
    return value


class Vouches:
    """This agent's side of other primaries' rounds: its answers and the withholds, journaled.

    It vouches only for ``peers`` (the sites that can be a primary).
    ``not_standby`` says why this host could serve as a primary now (its
    server is one, or would start as one), or None when it could not.
    ``clock``: Unix seconds (a vouch outlives the agent: it is journaled).
    """

    def __init__(self, journal: AgentJournal, site: str, peers: list[str],
                 not_standby: Callable[[], str | None], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._clock = clock
        self.site = site
        self.peers = sorted(peers)
        self._not_standby = not_standby
        # An answer checks the withhold and records the vouch as one step, so that a
        # withhold never misses a vouch given while it was being written down.
        self._lock = threading.Lock()

    def answer(self, body: Body) -> Body:
        """A primary's agent asks: vouch, or say why not."""
        primary = _site(body, "primary")
        revision = _count(body, "revision", 0)
        ttl = _count(body, "ttl", 1)
        if primary not in self.peers:
            return {"vouch": False, "why": f"{primary} is not a peer of {self.site}'s agent "
                    "(its cluster.peers)"}
        why = self._not_standby()
        if why is not None:
            return {"vouch": False, "why": why}
        with self._lock:
            withheld = self._withheld(primary)
            if withheld is not None and revision <= withheld:
                return {"vouch": False, "why": f"a promote replaces {primary} (its grant at "
                        f"revision {revision} is withheld)"}
            self._journal.set(_VOUCHED + primary, json.dumps({"at": self._clock(), "ttl": ttl}))
        return {"vouch": True}

    def withhold(self, body: Body, say: Callable[[str], None] | None = None) -> Body:
        """Vouch for ``primary`` no more, for grants up to ``revision``; says whether it is
        one of its peers (whose rounds need this agent) and how long the last vouch given
        may still keep it unfenced."""
        primary = _site(body, "primary")
        revision = _count(body, "revision", 0)
        with self._lock:
            withheld = max(revision, self._withheld(primary) or 0)
            self._journal.set(_WITHHELD + primary, str(withheld))
            return {"withheld": withheld, "peer": primary in self.peers,
                    "vouched": self.vouched(primary)}

    def _withheld(self, primary: str) -> int | None:
        text = self._journal.setting(_WITHHELD + primary)
        return None if text is None else int(text)

    def vouched(self, primary: str) -> float | None:
        """Seconds the last vouch given to ``primary`` may still keep it sure (None: none)."""
        text = self._journal.setting(_VOUCHED + primary)
        if text is None:
            return None
        given = json.loads(text)
        left = float(given["at"]) + float(given["ttl"]) - self._clock()
        return round(left, 3) if left > 0 else None

    def status(self) -> Body:
        """The vouches still running and the grants withheld, by primary."""
        return {"vouched": {site: left for site in self.peers
                            if (left := self.vouched(site)) is not None},
                "withheld": {site: revision for site in self.peers
                             if (revision := self._withheld(site)) is not None}}


def not_kept(body: Body, say: Callable[[str], None] | None = None) -> Body:
    """The withhold of an agent without a cluster section: it never vouches."""
    _site(body, "primary")
    return {"withheld": None, "peer": False, "vouched": None}
