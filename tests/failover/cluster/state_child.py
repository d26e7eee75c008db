"""Another process over the same state, for the contract tests: it resumes a run, or holds
the run lock.

    python -m tests.failover.cluster.state_child resume JOURNAL TOKEN
    python -m tests.failover.cluster.state_child hold CONFIG

JOURNAL is ``sqlite:<path>`` or ``etcd:<name>:<endpoint>,<endpoint>,...``; TOKEN a
leader's fencing token. ``resume`` finishes the journal's last run from its first step
that did not end well, as a new leader does, and prints the run's id. ``hold`` takes the
deployment's run lock, prints ``held`` and keeps it until its stdin closes or it is
killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from failover.cluster.etcd import EtcdCluster
from failover.cluster.journal import EtcdJournal
from failover.config import load_config
from failover.engine.journal import Journal
from failover.leadertoken import TokenSource, no_token
from failover.state import RunJournal, run_lock


def open_journal(spec: str, token: TokenSource = no_token) -> RunJournal:
    """The journal ``spec`` names, its writes carrying ``token``."""
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return Journal(Path(where), token=token)
    name, _, endpoints = where.partition(":")
    return EtcdJournal(EtcdCluster(endpoints.split(","), name, 3.0), token=token)


def resume(journal: RunJournal) -> str:
    """Finish the last run: every step that did not end well runs again, and ends well."""
    run = journal.last()
    assert run is not None and not run.settled, f"nothing to resume: {run}"
    journal.resumed(run.id)
    for step in run.steps():
        if step.outcome != "ok":
            journal.step_started(run.id, step.index, step.action)
            journal.step_ended(run.id, step.index, step.action, "ok", result={"by": "child"})
    journal.ended(run.id, "ok")
    return run.id


def main(argv: list[str]) -> None:
    """Do what ``argv`` asks (see the module's docstring)."""
    if argv[0] == "resume":
        token = int(argv[2])
        print(resume(open_journal(argv[1], lambda: token)), flush=True)
    elif argv[0] == "hold":
        with run_lock(load_config(Path(argv[1])), "the child"):
            print("held", flush=True)
            sys.stdin.read()
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
