"""The drill of this ``chaos run``: kept between the experiment's activities.

Chaos Toolkit runs the hypothesis, the method and the rollbacks of one
experiment in one process, one after the other, so the method's drill (and
what it measured) is a value here for the probes after it and the rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failover.drill.recorded import Recorded
from failover.drill.runner import Drill
from failover.engine.deployment import Deployment, open_deployment


@dataclass
class Session:
    """A fault this process injected (or tried to): its drill, what was measured, or why not."""

    drill: Drill | None = None  # None: the drill could not even start
    recorded: Recorded | None = None  # once the drill ended and was kept
    error: str | None = None  # why the drill broke or could not start


_current: Session | None = None


def begin() -> Session:
    """A new session: the method is about to inject its fault."""
    global _current
    _current = Session()
    return _current


def current() -> Session | None:
    """The session of this process, or None before any fault."""
    return _current


def deployment(config: str | None, state_dir: str | None) -> Deployment:
    """The deployment an activity acts on, found as the CLI finds it (``--config``, else the
    lab in ``state_dir``, else $FAILOVER_STATE_DIR or .failover/lab)."""
    return open_deployment(Path(config) if config else None,
                           Path(state_dir) if state_dir else None)
