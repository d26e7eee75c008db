"""The evidence as a document: titled sections of text, lists, tables and the chart.

One structure, two renderers (``markdown`` and ``html``), so that the file a
person reads in a repository and the one they file say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from failover.drill.history import HistoryEntry
from failover.drill.report.fmt import fmt, unit_of
from failover.evidence.gather import Evidence


@dataclass(frozen=True)
class Table:
    """A table of text cells."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """A titled part of the document, its parts in this order."""

    title: str
    paragraphs: tuple[str, ...] = ()
    image: str | None = None  # a file name beside the document
    table: Table | None = None
    items: tuple[str, ...] = ()  # a bulleted list, after the table
    notes: tuple[str, ...] = ()  # paragraphs after everything else


@dataclass(frozen=True)
class Document:
    """The whole evidence."""

    title: str
    lead: tuple[str, ...]
    sections: tuple[Section, ...] = field(default=())


def day(at: datetime) -> str:
    """A date as people file it: 2026-11-29."""
    return at.strftime("%Y-%m-%d")


def stamp(at: datetime | None) -> str:
    """A time to the minute, in UTC: 2026-11-29 14:05 UTC."""
    return "never" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


VERDICT_WORDS = {"passed": "PASS", "failed": "FAIL", "aborted": "ABORTED", "error": "ERROR"}


def verdict(entry: HistoryEntry) -> str:
    """PASS, FAIL (an objective missed), ABORTED, or ERROR (it broke: no figures)."""
    return VERDICT_WORDS[entry.outcome]


def build(evidence: Evidence, chart: str) -> Document:
    """The document for ``evidence``; ``chart`` is the chart's file name."""
    e = evidence
    return Document(
        title=f"Exit-plan evidence of {day(e.generated)}: {day(e.since)} to {day(e.until)}",
        lead=(f"Report date {day(e.generated)} (generated {stamp(e.generated)}) for the "
              f"deployment configured in {e.deployment}. It covers every drill recorded from "
              f"{stamp(e.since)} to {stamp(e.until)}.",
              _summary(e)),
        sections=(_sites(e), _objectives(e), _drills(e, chart), _coverage(e), _gaps(e),
                  _runbooks(e), _approvals(e), Section("Sign-off", paragraphs=(
                      "Reviewed by: ______________________   Date: ____________",)))
    )


def _summary(e: Evidence) -> str:
    outcomes = [d.outcome for d in e.drills]
    drilled = len(e.coverage) - len(e.gaps)
    return (f"In the period: {len(e.drills)} drill(s), " + ", ".join(
                f"{outcomes.count(o)} {o}" for o in ("passed", "failed", "aborted", "error"))
            + f"; {drilled} of {len(e.coverage)} scenarios drilled "
            f"({len(e.gaps)} not drilled); {len(e.approvals)} move(s) approved by hand; "
            f"{len(e.runbooks)} runbook(s) checksummed.")


def _sites(e: Evidence) -> Section:
    return Section(
        "Sites and providers",
        paragraphs=("Where the service runs, and where it can be moved or rebuilt.",),
        table=Table(("Site", "Kind", "Provider", "Address", "App URL"), tuple(
            (s.name, "spare (rebuilt from backups)" if s.spare else "site", s.provider,
             s.address, s.app_url) for s in e.sites)),
        notes=("DNS providers (the records are published to each): " + ", ".join(
            f"{name} ({kind})" for name, kind in e.dns_providers) + ".",),
    )


def _objectives(e: Evidence) -> Section:
    return Section(
        "Objectives",
        paragraphs=("What the deployment promises; every drill is judged on them.",),
        table=Table(("Objective", "Promise"), (
            ("RTO", f"writes acknowledged at the new primary within {fmt(e.rto_seconds, 's')} "
                    "of the fault"),
            ("RPO", f"at most {e.rpo_writes} acknowledged write(s) lost without notice; none "
                    "lost when the provider gave notice"),
        )),
        notes=("A scenario may expect more of its own (no split-brain writes, a move finished "
               "before the notice's deadline); a rebuild from backups is judged on its own "
               "RTO and on the archive's bound.",),
    )


def _drills(e: Evidence, chart: str) -> Section:
    if not e.drills:
        return Section("Drills in the period", paragraphs=("No drill was recorded in the "
                                                           "period.",))
    rows = tuple(
        (stamp(d.started), d.scenario, d.trigger, verdict(d), *_figures(d),
         "yes" if d.failed_back else "no", d.id)
        for d in e.drills)
    return Section(
        "Drills in the period",
        paragraphs=("Each drill moved the primary under synthetic load, measured what the "
                    "users saw, and (unless told not to) moved it back. RTO runs from the "
                    "fault to the first write acknowledged at the new primary; write "
                    "unavailability is the unluckiest user's total.",),
        image=chart,
        table=Table(("Started", "Scenario", "Trigger", "Verdict", "RTO", "Writes unavailable",
                     "Lost of acked writes", "Failed back", "Drill"), rows),
        items=tuple(_missed(d) for d in e.drills if verdict(d) != "PASS"),
    )


def _figures(d: HistoryEntry) -> tuple[str, str, str]:
    """RTO, write unavailability, lost of acknowledged writes; none for a drill that broke."""
    if d.error is not None:
        return "-", "-", "-"
    return (fmt(d.rto_seconds, "s"), fmt(d.write_unavailable_seconds, "s"),
            f"{d.lost_writes} of {d.acked_writes}")


def _missed(d: HistoryEntry) -> str:
    """Why a drill did not pass, in one line."""
    if d.error is not None:
        return f"{d.id} ({d.scenario}, {stamp(d.started)}) broke: {d.error}"
    if d.aborted is not None:
        return f"{d.id} ({d.scenario}, {stamp(d.started)}) was aborted: {d.aborted}"
    missed = [f"{v['objective']} measured {fmt(v['measured'], unit_of(v['objective']), 2)}, "
              f"limit {fmt(v['limit'], unit_of(v['objective']), 2)}"
              for v in d.verdicts if not v.get("met")]
    return (f"{d.id} ({d.scenario}, {stamp(d.started)}) missed: "
            + ("; ".join(missed) or "no objective was judged"))


def _coverage(e: Evidence) -> Section:
    return Section(
        "Scenarios drilled",
        paragraphs=("Every scenario the drill knows, how often it was drilled in the period "
                    "and passed, and when it was last drilled at all.",),
        table=Table(("Scenario", "Drills in the period", "Passed", "Last drilled"), tuple(
            (c.scenario, str(c.drills), str(c.passed), stamp(c.last_drilled))
            for c in e.coverage)),
    )


def _gaps(e: Evidence) -> Section:
    if not e.gaps:
        return Section("Gaps", paragraphs=("Every scenario was drilled in the period.",))
    return Section(
        "Gaps",
        paragraphs=("Scenarios not drilled in the period: nothing here shows that the "
                    "deployment survives them today.",),
        items=tuple(f"{c.scenario}: {c.summary} (last drilled: {stamp(c.last_drilled)})"
                    for c in e.gaps),
    )


def _runbooks(e: Evidence) -> Section:
    if not e.runbooks:
        return Section("Runbooks", paragraphs=(f"No runbook was found in {e.runbooks_dir}.",))
    return Section(
        "Runbooks",
        paragraphs=(f"The runbooks in {e.runbooks_dir} on the report date, by SHA-256: a "
                    "later copy with another checksum is another version.",),
        table=Table(("File", "SHA-256", "Bytes"),
                    tuple((r.name, r.sha256, str(r.size)) for r in e.runbooks)),
    )


def _approvals(e: Evidence) -> Section:
    if not e.approvals:
        return Section("Moves approved by hand", paragraphs=(
            "No move was approved by hand (approve mode) in the period.",))
    return Section(
        "Moves approved by hand",
        paragraphs=("Moves the controller proposed in approve mode, and who let each go "
                    "ahead (failover approve).",),
        table=Table(("Approved", "By", "Move", "From → to", "Reason", "State"), tuple(
            (stamp(a.approved), a.approved_by or "(not recorded)", f"{a.kind} {a.move_id}",
             f"{a.from_site} → {a.to_site}", a.reason, a.state) for a in e.approvals)),
    )
