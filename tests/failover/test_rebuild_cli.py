"""`failover rebuild` and `failover backup`: what is refused before any server is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from failover.cli import cli
from failover.cli.rebuild import registration
from failover.engine.deployment import open_deployment
from failover.engine.rebuild import rebuild_deployment
from tests.failover.handbuilt import lab_files


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("--site", "nowhere"), "no site or spare 'nowhere' in the configuration; spares: spare"),
    (("--site", "aws"), "aws is a site, not a spare"),
    (("--site", "spare", "--to-time", "2026-11-29T16:30:00"), "give the offset too"),
    (("--site", "spare", "--to-time", "yesterday"), "'yesterday' is no ISO 8601 time"),
    (("--site", "spare", "--as", "leader"), "'leader' is not one of 'primary', 'standby'"),
])
def test_a_rebuild_that_cannot_be_asked_is_refused_in_one_line(
        tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    root = lab_files(tmp_path / "lab")
    for command in (("rebuild", "--yes"), ("plan", "rebuild")):
        code, err = run(*command, *args, "--state-dir", str(root))
        assert code == 2 and said in err, (command, err)


def test_the_registration_is_the_spare_as_a_site_without_its_provisioning(
        tmp_path: Path) -> None:
    deployment = rebuild_deployment(open_deployment(None, lab_files(tmp_path / "lab")), "spare")
    text = registration(deployment, "spare")
    assert "move it from spares: to sites:" in text and "  spare:\n" in text
    assert "provision" not in text and "agent_config" not in text
    assert f"address: {deployment.config.site('spare').address}" in text
