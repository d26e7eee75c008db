"""A move as a Markdown runbook, and back: the manual fallback's code blocks, in order.

The text is a function of the deployment, the plans and the journal only:
no timestamp, no host name, no path outside the ones configured, so that
rendering twice gives the same bytes and a test can hold the committed
files to the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from failover.runbooks.durations import Durations
from failover.runbooks.model import Block, Check, Move, MoveStep, names
from failover.runbooks.shell import Shell
from failover.runbooks.texts import text_of

NOTICE = ("<!-- Rendered by `failover runbook render` from the plans the tool runs: do not "
          "edit by hand; change failover/runbooks/ and render again. -->")
MANUAL = "By hand, without the tool"
TOOLS = "psql, curl, jq, dig, nsupdate and aws (on the hosts: runuser, pg_rewind, pgbackrest)"


@dataclass(frozen=True)
class Context:
    """What every runbook of one rendering shares."""

    shell: Shell
    durations: Durations
    deployment: str  # which deployment, in words: the lab, or the file it came from
    where: str  # where the manual commands run from


def fenced(code: str) -> list[str]:
    """A bash code block."""
    return ["```bash", code, "```"]


def _blocks(blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if block.note:
            out += [block.note, ""]
        out += [*fenced(block.code), ""]
    return out


def _checks(checks: list[Check]) -> list[str]:
    out: list[str] = []
    for check in checks:
        out += [*fenced(check.command), f"You should see: {check.expect}", ""]
    return out


def _tool(item: MoveStep) -> str:
    step = item.step
    if item.command is None:
        return "The tool has no step for this on its own: it is done by hand."
    how = "only looks" if not step.changes else "changes things"
    retry = ", retried on transient errors" if step.retry else ""
    return (f"Step {item.number} of `{item.command}` ({how}; timeout {step.timeout:g} s"
            f"{retry}). The tool journals every step: after a failure the same command "
            "resumes at the step that failed.")


def render_step(ctx: Context, move: Move, item: MoveStep, number: int) -> list[str]:
    """One step's section."""
    step, sh = item.step, ctx.shell
    text = text_of(step.action)
    fields = names(sh, step, move)
    out = [f"### {number}. {step.title}", "", f"`{step.action}`", "",
           "#### What it does and why", "", text.why.format(**fields), "",
           "#### The tool", "", _tool(item), "", "#### Check", ""]
    checks = text.check(sh, step, move)
    out += _checks(checks) if checks else ["Nothing to look at: it only waits.", ""]
    out += [f"#### {MANUAL}", ""]
    if text.manual is None:
        out += ["It only looks: run the checks above; what each shows decides what comes "
                "next.", ""]
    else:
        out += _blocks(text.manual(sh, step, move))
    took = ctx.durations.typical(step) if item.command else "Done by hand: the journal has " \
        "no record of it."
    out += ["#### Typical duration", "", took, "",
            "#### When it fails", "", text.on_failure.format(**fields), ""]
    if text.recover is not None:
        out += _blocks(text.recover(sh, step, move))
    return out


def _sites(ctx: Context) -> str:
    config = ctx.shell.config
    sites = ", ".join(f"{n} ({s.provider}, {s.address})" for n, s in config.sites.items())
    dns = ", ".join(f"{n} ({p.kind})" for n, p in config.dns_providers.items())
    return (f"Rendered for {ctx.deployment}: sites {sites}; zone {config.dns.zone}; DNS "
            f"providers {dns}.")


def render_move(ctx: Context, move: Move) -> str:
    """The whole runbook of one move."""
    out = [NOTICE, "", f"# {move.title}", "", _sites(ctx), "", "## When", "", move.when, ""]
    if move.commands:
        out += ["## With the tool", "", *fenced("\n".join(move.commands)), ""]
    if move.notes:
        out += ["Notes from the plan:", "", *[f"- {n}" for n in move.notes], ""]
    if move.steps:
        out += ["## By hand: before you start", "",
                f"- Run the commands {ctx.where}, one block at a time; each stands on its own.",
                f"- They need {TOOLS}.",
                "- Stop the controller (`failover watch`) first if it runs: it would act on "
                "a move half done.",
                "- A loop that waits (`until ...`) is stopped with Ctrl-C once it has waited "
                "longer than the step's timeout; then see the step's \"When it fails\".", "",
                "## Steps", ""]
    for number, item in enumerate(move.steps, 1):
        out += render_step(ctx, move, item, number)
    return "\n".join(out).rstrip() + "\n"


def render_index(ctx: Context, moves: list[Move]) -> str:
    """The runbooks' README: one line per runbook, and how they are made."""
    rows = [f"| [{m.name}.md]({m.name}.md) | {m.title} |" for m in moves]
    return "\n".join([
        NOTICE, "", "# runbooks", "",
        "Markdown runbooks for on-call staff, one per move kind, rendered by `failover runbook "
        "render` from the same plans the tool executes. A test fails when these files differ "
        "from what the code renders: `failover runbook render --check` says which, and "
        "`failover runbook render` writes them anew.", "",
        _sites(ctx), "", "| Runbook | Move |", "| --- | --- |", *rows, "",
        "## How they are made", "",
        "- Each step is a step of the move's plan (`failover plan ...` prints the same), with "
        "its action's words and commands from `failover/runbooks/texts_*.py`: what it does "
        "and why, the tool's command, how to check it, the manual fallback without the tool, "
        "its typical duration and what to do when it fails.",
        "- The committed runbooks are rendered for the lab that `failover lab up` starts with "
        "its defaults (state in `.failover/lab`, run from the repository's root), without "
        "starting it. `failover runbook render --config F --out DIR` renders them with a "
        "real deployment's names, addresses and files; `--state-dir DIR` for another lab.",
        "- They are written for a move from the configuration's first site to its second "
        "(the primary and the standby the lab starts with); the way back is the same with "
        "the names swapped.",
        "- Typical durations come from a journal's recent runs, and only when one is read "
        "(`--config`, `--state-dir`): the committed runbooks are rendered without one, so "
        "that they are the same on every machine and after every run.",
        "- A host's server is its agent's: a manual step that must stop it (pg_rewind, a "
        "restore) stops the agent's unit first (`systemctl stop failover-agent`, which stops "
        "PostgreSQL) and starts it again after. The lab has no systemd: there the agent is "
        "frozen (`kill -STOP`), so that it neither restarts the server nor leaves the lab's "
        "records, and thawed (`kill -CONT`) to hand the server back.",
        "- The manual fallback of the planned switchover is run in the lab, block by block, "
        "by tests/failover/runbooks/test_manual_switchover_in_lab.py, under a writer: one "
        "primary, the other site streaming from it, DNS switched at every provider, no "
        "acknowledged write lost.", ""])


def manual_blocks(markdown: str) -> list[str]:
    """The code blocks under every "By hand, without the tool" heading, in order."""
    blocks: list[str] = []
    heading = ""
    code: list[str] | None = None  # the lines of the block being read; None outside one
    for line in markdown.splitlines():
        if code is not None:
            if line == "```":
                if heading == MANUAL:
                    blocks.append("\n".join(code))
                code = None
            else:
                code.append(line)
        elif line.startswith("```"):
            code = []
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return blocks
