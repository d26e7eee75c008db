"""The project's stacks and their sites: which stack a ``--site`` means."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.exceptions import ConfigError, UsageError
from failover.stacks.project import check_stack, known_stacks, resolve_stack, stack_sites
from failover.stacks.workspace import PROJECT_DIR
from tests.stacks.projects import SITES, pulumi_project


def test_the_stacks_are_the_projects_stack_files(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks")
    assert known_stacks(project) == ["aws-primary", "hetzner-standby", "spare"]
    check_stack("spare", project)
    with pytest.raises(UsageError, match=r"no stack 'aws' .*stacks: aws-primary, "
                       r"hetzner-standby, spare$"):
        check_stack("aws", project)


def test_a_folder_without_pulumi_yaml_is_no_project(tmp_path: Path) -> None:
    for refused in (lambda: check_stack("aws-primary", tmp_path),
                    lambda: resolve_stack("aws", tmp_path)):
        with pytest.raises(UsageError, match=r"no Pulumi project in .*--project-dir"):
            refused()


def test_the_checked_in_stacks_deploy_their_sites() -> None:
    assert stack_sites(PROJECT_DIR) == SITES


@pytest.mark.parametrize(("name", "stack"), [
    ("aws", "aws-primary"), ("aws-primary", "aws-primary"),
    ("hetzner", "hetzner-standby"), ("hetzner-standby", "hetzner-standby"),
    ("spare", "spare"),  # a stack named as its site
])
def test_site_takes_the_site_s_name_or_the_stack_s(name: str, stack: str) -> None:
    assert resolve_stack(name, PROJECT_DIR) == stack


def test_a_stack_naming_no_site_deploys_the_site_of_its_own_name(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks", {"lab": None, "aws-primary": "aws"})
    assert stack_sites(project) == {"aws-primary": "aws", "lab": "lab"}
    assert resolve_stack("lab", project) == "lab"


def test_an_unknown_site_lists_each_site_and_its_stack(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks")
    with pytest.raises(UsageError) as refused:
        resolve_stack("gcp", project)
    assert str(refused.value) == (
        f"--site gcp: no site or stack of that name in {project} (site -> stack: "
        "aws -> aws-primary, hetzner -> hetzner-standby, spare -> spare)")


@pytest.mark.parametrize("sites", [
    {"aws": "old", "aws-primary": "aws"},  # a stack's name, and another stack's site
    {"aws-primary": "aws", "aws-again": "aws"},  # two stacks of one site
])
def test_a_name_meaning_two_stacks_is_refused(tmp_path: Path, sites: dict[str, str]) -> None:
    project = pulumi_project(tmp_path / "stacks", sites)
    with pytest.raises(UsageError) as refused:
        resolve_stack("aws", project)
    assert str(refused.value).startswith(f"--site aws: means more than one stack in {project} "
                                         f"({', '.join(sorted(sites))}); give the stack's name")
    assert "\n" not in str(refused.value)
    assert resolve_stack("aws-primary", project) == "aws-primary"


def test_a_stack_file_that_is_no_yaml_is_named(tmp_path: Path) -> None:
    project = pulumi_project(tmp_path / "stacks")
    (project / "Pulumi.spare.yaml").write_text("config: [unclosed\n")
    with pytest.raises(ConfigError, match=r"cannot read .*Pulumi\.spare\.yaml: "):
        resolve_stack("aws", project)
