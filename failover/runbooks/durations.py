"""How long each step kind took in the journal's recent runs: a runbook's "typical duration".

Read only when a journal is given: the committed lab runbooks are rendered
without one, so that they are the same on every machine and after every run
(a fresh clone has no journal, and each run would change them).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from failover.engine.plan import Step
from failover.state import RunJournal

RECENT_RUNS = 50


@dataclass(frozen=True)
class Durations:
    """Seconds each action's steps took, in the runs read (ended well only)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    journal: str | None = None  # where they were read; None: rendered without a journal

    @classmethod
    def read(cls, journal: RunJournal | None, runs: int = RECENT_RUNS) -> Durations:
        """The durations of the last ``runs`` runs in ``journal`` (none without one)."""
        if journal is None:
            return cls()
        seconds: dict[str, list[float]] = {}
        for run in journal.runs(limit=runs):
            for step in run.steps():
                if step.outcome == "ok" and step.seconds is not None:
                    seconds.setdefault(step.action, []).append(step.seconds)
        return cls(seconds, journal.where)

    def typical(self, step: Step) -> str:
        """One sentence: how long the step kind takes, as far as the journal knows."""
        limit = f"its timeout is {step.timeout:g} s"
        if self.journal is None:
            return f"Rendered without a journal; {limit}."
        taken = self.seconds.get(step.action)
        if not taken:
            return f"No recent run of it in this journal; {limit}."
        return (f"{statistics.median(taken):.1f} s (median of {len(taken)} in the last "
                f"{RECENT_RUNS} runs; longest {max(taken):.1f} s); {limit}.")
