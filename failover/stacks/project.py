"""The Pulumi project's stacks and the sites they deploy: which stack a ``--site`` means.

Each stack is one ``Pulumi.<stack>.yaml`` in the project, and deploys the
site its ``failover:site`` names (the stack's own name when it names none, as
``infra.components.settings`` reads it): stack ``aws-primary`` deploys site
``aws``. ``failover stack --site`` takes either name, as every other
``--site`` of the tool takes a site's.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from failover.exceptions import ConfigError, UsageError

SITE_KEY = "failover:site"


def known_stacks(project_dir: Path) -> list[str]:
    """The stacks the project defines: one ``Pulumi.<stack>.yaml`` each, sorted."""
    return sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml")
                  for path in project_dir.glob("Pulumi.*.yaml"))


def stack_sites(project_dir: Path) -> dict[str, str]:
    """Each stack's site, by stack, from its ``failover:site`` (else the stack's name)."""
    sites = {}
    for stack in known_stacks(project_dir):
        path = project_dir / f"Pulumi.{stack}.yaml"
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
        config = data.get("config") if isinstance(data, dict) else None
        site = config.get(SITE_KEY) if isinstance(config, dict) else None
        sites[stack] = site if isinstance(site, str) and site else stack
    return sites


def _check_project(project_dir: Path) -> None:
    if not (project_dir / "Pulumi.yaml").is_file():
        raise UsageError(f"no Pulumi project in {project_dir} (no Pulumi.yaml there): "
                         "give the project's folder with --project-dir")


def check_stack(stack: str, project_dir: Path) -> None:
    """Refuse a project dir without a Pulumi project, and a stack it does not define."""
    _check_project(project_dir)
    stacks = known_stacks(project_dir)
    if stack not in stacks:
        raise UsageError(f"no stack {stack!r} in {project_dir} (no Pulumi.{stack}.yaml); "
                         f"stacks: {', '.join(stacks) or 'none'}")


def resolve_stack(name: str, project_dir: Path) -> str:
    """The stack ``name`` means: the stack of that name, or the one stack deploying the site
    of that name; an unknown or ambiguous name is refused, listing site -> stack."""
    _check_project(project_dir)
    sites = stack_sites(project_dir)
    meant = {stack for stack, site in sites.items() if name in (stack, site)}
    if len(meant) == 1:
        return meant.pop()
    choices = ", ".join(f"{site} -> {stack}" for stack, site in sorted(sites.items()))
    if meant:
        raise UsageError(f"--site {name}: means more than one stack in {project_dir} "
                         f"({', '.join(sorted(meant))}); give the stack's name (site -> "
                         f"stack: {choices})")
    raise UsageError(f"--site {name}: no site or stack of that name in {project_dir} "
                     f"(site -> stack: {choices or 'none'})")
