"""A deployment without servers, for the unit layer: the lab's files, hand-built answers.

``lab_files`` writes what ``failover lab up`` leaves in a state dir (the
configuration and every secret file it names) without starting anything.
``FakeDeployment`` is a real ``Deployment`` over a configuration given as a
dict, whose apps answer from hand-built values; ``HandBuiltDeployment`` is
one over the lab's files whose databases answer from hand-built values too
and whose sites have no agent; ``JournalingExecutor`` is
the engine's executor minus the hosts: it journals each step of a plan as
done, or fails at a named one, so the journal reads as after a real run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from failover.agent.client import AgentClient
from failover.config import parse_config
from failover.engine.deployment import Deployment, Readiness, SiteView, Topology
from failover.engine.journal import RunRecord
from failover.engine.plan import Plan
from failover.exceptions import StepFailed
from failover.secretfiles import write_private
from infra.lab.agents import secret_file as agent_secret_file
from infra.lab.agents import spare_template
from infra.lab.config import lab_config
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from infra.lab.secrets import LabSecrets, ec2_credentials_file, hcloud_spare_token_file

LAYOUT = LabLayout(subnet="127.99")  # never started: nothing listens there
STREAMING = Topology({"aws": SiteView("aws", "primary", "0/1"),
                      "hetzner": SiteView("hetzner", "standby", "0/1", upstream="aws")})


def lab_files(root: Path) -> Path:
    """A state dir as ``lab up`` leaves it (failover.yaml and its secrets); returns it."""
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    root.chmod(0o755)
    paths = LabPaths(root)
    LabSecrets.generate().save(paths, [LAYOUT.address(s) for s in ("aws", "hetzner")],
                               LAYOUT.postgres_port)
    for site in ("aws", "hetzner", "spare"):
        write_private(agent_secret_file(paths, site), "hand-built-agent-secret\n")
    template = spare_template(paths, "spare")  # the spare's agent config, as lab up writes it
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text("site: spare\n")
    write_private(hcloud_spare_token_file(paths), "hand-built-token\n")
    write_private(ec2_credentials_file(paths),
                  "[default]\naws_access_key_id = AKIAHANDBUILT\n"
                  "aws_secret_access_key = not-a-real-key\n")
    config = lab_config(LAYOUT, paths)
    # A lone controller, its state in files beside the journal: no etcd listens at 127.99
    # (the state kept in etcd is tested against real members in tests/failover/cluster).
    config["watch"].pop("cluster", None)
    (root / "failover.yaml").write_text(yaml.safe_dump(config))
    return root


class FakeDeployment(Deployment):
    """A Deployment whose apps' readiness is set by the test (a fake: no HTTP is sent).

    Each agent secret file the configuration names is written when missing, as
    ``lab up`` would, so that a plan can ask which sites have compute.
    """

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        super().__init__(parse_config(data, "failover.yaml", folder), str(folder / "failover.yaml"))
        for site in self.config.sites.values():
            if site.compute is not None and not site.compute.secret_file.exists():
                write_private(site.compute.secret_file, "hand-built-agent-secret\n")
        self.not_ready: dict[str, str] = {}  # site -> why its /readyz would say no
        self.seen: Topology | None = None  # what ``observe`` answers

    def readiness(self, site: str, timeout: float = 3.0) -> Readiness:
        """Ready unless the test said otherwise."""
        if site in self.not_ready:
            return Readiness(False, self.not_ready[site])
        return Readiness(True, f"{self.config.site(site).app_url}: ready")

    def observe(self, timeout: float = 1.0) -> Topology:
        """The topology the test set."""
        assert self.seen is not None, "set deployment.seen first"
        return self.seen


class HandBuiltDeployment(FakeDeployment):
    """The lab's configuration over its files, a real journal; databases answer ``topology``."""

    def __init__(self, root: Path, topology: Topology = STREAMING) -> None:
        lab_files(root)
        super().__init__(root, yaml.safe_load((root / "failover.yaml").read_text()))
        self.seen = topology

    @property
    def topology(self) -> Topology:
        """What the databases answer (a test may set another)."""
        assert self.seen is not None
        return self.seen

    @topology.setter
    def topology(self, value: Topology) -> None:
        self.seen = value

    def agent(self, site: str) -> AgentClient | None:
        return None  # no agent listens: plans end at the move itself, no lease is renewed


class JournalingExecutor:
    """The engine's executor minus the hosts: every step journaled as done (or one failing)."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at
        self.plans: list[Plan] = []

    def __call__(self, deployment: Deployment, plan: Plan, *, resume: RunRecord | None = None,
                 progress: Callable[[str], None] = print,
                 before_step: Callable[[int, object], None] | None = None) -> RunRecord:
        journal = deployment.journal
        self.plans.append(plan)
        if resume is not None:
            run_id = resume.id
            journal.resumed(run_id)
        else:
            run_id = journal.begin(plan)
        for index, step in enumerate(plan.steps):
            if before_step is not None:
                before_step(index, step)
            journal.step_started(run_id, index, step.action)
            if step.action == self.fail_at:
                journal.step_ended(run_id, index, step.action, "failed", error="boom")
                journal.ended(run_id, "failed", f"step {step.action} failed: boom")
                raise StepFailed(f"step {step.action} failed: boom")
            journal.step_ended(run_id, index, step.action, "ok", result={})
        journal.ended(run_id, "ok")
        return journal.run(run_id)
