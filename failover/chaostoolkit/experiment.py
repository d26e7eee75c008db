"""A drill scenario as a Chaos Toolkit experiment: the objectives, the fault, the fail back.

The experiment is data, the same for the same scenario, options and
objectives (so it can be kept in a repository and diffed). Its hypothesis
has a probe for the deployment being whole and one for each figure the
scenario is judged on, its tolerance the objective's limit: the limits come
from the scenario's own objectives, judged once over a drill that measured
nothing (each names its limit whatever it measured), so a scenario that
expects more of its own brings its own probes. ``objectives_met`` covers the
verdicts that are not figures (the engine's run ended well, a deadline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from failover.drill.objectives import Measured, judge
from failover.drill.results import Promise
from failover.drill.runner import DrillOptions
from failover.drill.scenarios import Scenario

FORMATS = ("chaostoolkit",)
PROBES = "failover.chaostoolkit.probes"
ACTIONS = "failover.chaostoolkit.actions"
DEFAULTS = DrillOptions()


@dataclass(frozen=True)
class ExportOptions:
    """How the exported drill runs: the drill's own options, as ``failover drill`` takes them."""

    notice_seconds: float = DEFAULTS.notice_seconds
    warmup_seconds: float = DEFAULTS.warmup_seconds
    settle_seconds: float = DEFAULTS.settle_seconds
    rate: float = DEFAULTS.workload.rate
    users: int = DEFAULTS.workload.users


def limits(scenario: Scenario, promise: Promise,
           notice_seconds: float) -> list[tuple[str, float | int]]:
    """The numeric limit of each objective the scenario is judged on, in its order."""
    nothing = Measured(fault_at=0.0, ended=0.0, rto_seconds=None, lost_writes=0,
                       split_brain_writes=0, run=None, promise=promise,
                       notice_seconds=notice_seconds)
    return [(v.objective, v.limit) for v in judge(scenario.objectives(), nothing)
            if isinstance(v.limit, int | float) and not isinstance(v.limit, bool)]


def _python(module: str, func: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "python", "module": module, "func": func, "arguments": arguments}


def experiment(scenario: Scenario, promise: Promise, options: ExportOptions,
               target: dict[str, str]) -> dict[str, Any]:
    """The experiment for ``scenario``; ``target`` names the deployment ({"config": FILE} or
    {"state_dir": DIR}), or is empty for the one $FAILOVER_STATE_DIR names when it runs."""
    probes: list[dict[str, Any]] = [{
        "type": "probe", "name": "deployment-whole", "tolerance": True,
        "provider": _python(PROBES, "deployment_healthy", dict(target)),
    }]
    for objective, limit in limits(scenario, promise, options.notice_seconds):
        probes.append({
            "type": "probe", "name": f"{objective}-within-objective", "tolerance": [0, limit],
            "provider": _python(PROBES, "figure", {"objective": objective}),
        })
    probes.append({"type": "probe", "name": "objectives-met", "tolerance": True,
                   "provider": _python(PROBES, "objectives_met", {})})
    return {
        "version": "1.0.0",
        "title": f"The service keeps its objectives through {scenario.name}",
        "description": (
            f"failover drill {scenario.name}: {scenario.summary}. The method injects the "
            "fault under synthetic load and lets the engine move; the rollback moves the "
            "primary back. Run it with `chaos run` where the failover package is installed; "
            "rollbacks run even when the experiment is aborted or interrupted (runtime: "
            "rollbacks strategy always, as `chaos run --rollback-strategy=always` would)."),
        "tags": ["failover", "drill", scenario.name,
                 "planned" if scenario.planned else "unplanned"],
        "runtime": {"rollbacks": {"strategy": "always"}},
        "steady-state-hypothesis": {
            "title": f"One primary, the others streaming from it, and the objectives kept "
                     f"(RTO {promise.rto_seconds:g} s, RPO {promise.rpo_writes} writes)",
            "probes": probes,
        },
        "method": [{
            "type": "action", "name": f"inject-{scenario.name}",
            "provider": _python(ACTIONS, "run_drill", {
                "scenario": scenario.name, "notice_seconds": options.notice_seconds,
                "warmup_seconds": options.warmup_seconds,
                "settle_seconds": options.settle_seconds, "rate": options.rate,
                "users": options.users, **target}),
        }],
        "rollbacks": [{
            "type": "action", "name": "fail-back",
            "provider": _python(ACTIONS, "fail_back", {}),
        }],
    }
