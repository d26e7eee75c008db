"""Every step kind's words and commands, keyed by action name (one per action in ACTIONS).

A runbook step is rendered from the text of its action: what it does and
why, how to check it, the manual fallback and what to do when it fails. The
engine's actions each have one (a unit test holds every action to it); the
steps only a person can do have theirs too.
"""

from __future__ import annotations

from failover.exceptions import FatalError
from failover.runbooks.model import StepText
from failover.runbooks.texts_db import DB
from failover.runbooks.texts_edge import EDGE
from failover.runbooks.texts_manual import MANUAL
from failover.runbooks.texts_rebuild import REBUILD

TEXTS: dict[str, StepText] = {**DB, **EDGE, **REBUILD, **MANUAL}


def text_of(action: str) -> StepText:
    """The text of an action; an action without one is a bug in this package."""
    try:
        return TEXTS[action]
    except KeyError:
        raise FatalError(f"no runbook text for the action {action!r}: add one to "
                         "failover/runbooks/texts_*.py") from None
