"""Opening a deployment and its secrets: what is refused before anything is asked of a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from failover.cli import cli
from failover.cli.base import confirm
from failover.engine.deployment import open_deployment
from failover.exceptions import ConfigError, UsageError
from failover.secretfiles import check_trusted_dir, read_private, write_private
from tests.failover.handbuilt import lab_files


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stderr


def test_a_state_dir_as_lab_up_leaves_it_opens(tmp_path: Path) -> None:
    deployment = open_deployment(None, lab_files(tmp_path / "lab"))
    assert set(deployment.config.sites) == {"aws", "hetzner"}


def test_a_missing_passfile_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    (root / "secrets" / "pgpass").unlink()
    code, err = run("status", "--state-dir", str(root))
    assert code == 2
    assert f"sites.aws.database.passfile: {root}/secrets/pgpass does not exist" in err
    assert "promote" not in err  # never advice to promote over a missing file
    code, err = run("switchover", "--to", "hetzner", "--yes", "--state-dir", str(root))
    assert code == 2 and "pgpass does not exist" in err


def test_a_state_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = lab_files(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=f"state dir {link} is a symbolic link"):
        open_deployment(None, link)
    code, err = run("lab", "down", "--state-dir", str(link))
    assert code == 2 and "is a symbolic link" in err


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_state_dir_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    root = lab_files(tmp_path / "lab")
    root.chmod(mode)
    with pytest.raises(ConfigError, match=rf"may be written by others \(mode {mode:o}\).*"
                                          rf"chmod go-w {root}"):
        open_deployment(None, root)
    check_trusted_dir(tmp_path / "not-yet", "state dir")  # made private when created


def test_a_secret_file_behind_a_symlink_is_neither_read_nor_written(tmp_path: Path) -> None:
    real = tmp_path / "real.secret"
    write_private(real, "s3cret\n")
    link = tmp_path / "link.secret"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        read_private(link, "webhook secret file")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        write_private(link, "overwritten\n")
    assert real.read_text() == "s3cret\n"
    assert read_private(real) == "s3cret\n"


def test_no_terminal_and_no_yes_says_what_is_missing(tmp_path: Path) -> None:
    root = lab_files(tmp_path / "lab")
    code, err = run("drill", "--state-dir", str(root))  # CliRunner gives no terminal
    assert code == 2
    assert err.startswith("failover: error: --yes is missing: there is no terminal to "
                          "confirm on, and this would run 1 termination-notice drill(s)")
    assert err.rstrip().endswith("pass --yes to go ahead")
    with pytest.raises(UsageError, match=r"would run this switchover \(aws -> hetzner\); "
                                         "pass --yes to go ahead"):
        confirm("run this switchover (aws -> hetzner)?", False)
