"""The words and commands of a rebuild's own steps: a host from the provider's API, a database
from the backups.

Making the host by hand is one way per kind of provisioning (``PROVISION``,
found by the ``kind`` tag as the engine finds its hosts): the ``hcloud`` CLI
or ``aws ec2``, with the names the tool gives (``failover-<site>``), so that
the tool finds and adopts what was made by hand when it runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from failover.config import SpareConfig
from failover.engine.plan import Step
from failover.provision.config import Ec2ProvisionConfig, HcloudProvisionConfig
from failover.runbooks.model import Block, Check, Move, StepText
from failover.runbooks.shell import SCRATCH, Shell, aws_cli
from failover.runbooks.texts_db import RECOVERY


def user_data(site: str) -> str:
    """Where the manual provisioning reads the new host's user-data from."""
    return f'"{SCRATCH}/failover-{site}-user-data.yaml"'

DEFAULT_HCLOUD = "https://api.hetzner.cloud/v1"


def _spare(sh: Shell, site: str) -> SpareConfig:
    spec = sh.site(site)
    assert isinstance(spec, SpareConfig), f"{site} is no spare"
    return spec


def _hcloud(sh: Shell, site: str, p: HcloudProvisionConfig) -> str:
    name = f"failover-{site}"
    endpoint = [] if p.endpoint == DEFAULT_HCLOUD else [f"export HCLOUD_ENDPOINT={p.endpoint}"]
    return "\n".join([
        f'export HCLOUD_TOKEN="$(cat {sh.shown(p.token_file)})"', *endpoint,
        f"hcloud primary-ip describe {name}   # the reserved address: "
        f"{_spare(sh, site).address}",
        f"hcloud server create --name {name} --type {p.server_type} --image {p.image} "
        f"--location {p.location} --primary-ipv4 {name} --label failover-site={site} "
        f"--user-data-from-file {user_data(site)}"])


def _ec2(sh: Shell, site: str, p: Ec2ProvisionConfig) -> str:
    aws = aws_cli(p.region, p.endpoint_url, sh.path(p.credentials_file))
    subnet = f" --subnet-id {p.subnet_id}" if p.subnet_id else ""
    tags = (f"'ResourceType=instance,Tags=[{{Key=Name,Value=failover-{site}}},"
            f"{{Key=failover-site,Value={site}}}]'")
    return "\n".join([
        f"INSTANCE_ID=$({aws} ec2 run-instances --image-id {p.image_id} --instance-type "
        f"{p.instance_type}{subnet} --security-groups failover-{site} --user-data "
        f"file://{user_data(site)} --tag-specifications {tags} "
        "--query 'Instances[0].InstanceId' --output text)",
        f'{aws} ec2 wait instance-running --instance-ids "$INSTANCE_ID"',
        f'{aws} ec2 associate-address --public-ip {_spare(sh, site).address} '
        '--instance-id "$INSTANCE_ID"'])


PROVISION: dict[str, Callable[[Shell, str, Any], str]] = {"hcloud": _hcloud, "ec2": _ec2}


def _provision(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    spec = _spare(sh, site).provision
    make = PROVISION.get(spec.kind)
    code = make(sh, site, spec) if make else f"# no manual command for {spec.kind}: its console"
    return [Block(code, f"Make the host at {spec.kind} with the user-data `failover rebuild` "
                  f"sends (infra/cloudinit/user-data.yaml with {site}'s agent config and "
                  "secret), saved first as the file the command names:")]


def _agent_answers(sh: Shell, step: Step, move: Move) -> list[Check]:
    compute = sh.site(step.params["site"]).compute
    url = compute.url if compute else "http://ADDRESS:7070"
    return [Check(f"curl -s -o /dev/null -w '%{{http_code}}\\n' {url}/v1/status",
                  "`401`: the agent answers (and refuses an unsigned request)")]


def _repo_options(sh: Shell, name: str) -> str:
    assert sh.config.backups is not None
    r = sh.config.backups.repositories[name]
    return (f"--repo1-type=s3 --repo1-s3-endpoint={r.endpoint} --repo1-storage-port={r.port} "
            f"--repo1-s3-bucket={r.bucket} --repo1-s3-region={r.region} "
            f"--repo1-s3-uri-style={r.uri_style} --repo1-path={r.path} "
            f"--repo1-storage-verify-tls={'y' if r.verify_tls else 'n'}")


def _key(file: str, name: str, env: str) -> str:
    return f"export {env}=\"$(awk -F' *= *' '$1 == \"{name}\" {{print $2; exit}}' {file})\""


def _restore_database(sh: Shell, step: Step, move: Move) -> list[Block]:
    site, role = step.params["site"], step.params["role"]
    repo = step.params["repositories"][0]
    assert sh.config.backups is not None
    spec = sh.config.backups.repositories[repo]
    h, when = sh.host(site), step.params["target_time"]
    if role == "standby":
        kind = " --type=standby"
    elif when:
        kind = f' --type=time --target="{when}" --target-action=promote'
    else:
        kind = ""  # to the end of the archive, then promote
    creds = sh.shown(spec.credentials_file)
    keys = "PGBACKREST_REPO1_S3_KEY,PGBACKREST_REPO1_S3_KEY_SECRET"
    lines = [
        f"# On {site}'s host: {h.where}; the repository's credentials file ({creds}) "
        "copied there", *h.setup(), *h.hold,
        _key(creds, "aws_access_key_id", "PGBACKREST_REPO1_S3_KEY"),
        _key(creds, "aws_secret_access_key", "PGBACKREST_REPO1_S3_KEY_SECRET"),
        f"runuser -u {h.os_user} -w {keys} -- pgbackrest --stanza={sh.config.backups.stanza} "
        f'{_repo_options(sh, repo)} --pg1-path="$PGDATA" --log-level-console=info '
        f"--log-level-file=off restore --delta{kind}",
        f"unset {keys.replace(',', ' ')}", *h.release]
    others = ", ".join(step.params["repositories"][1:]) or "none"
    return [Block("\n".join(lines), f"Restore from {repo} (the nearest; the others, in order: "
                  f"{others}):")]


def _restored(sh: Shell, step: Step, move: Move) -> list[Check]:
    site, role = step.params["site"], step.params["role"]
    return [Check(sh.psql(site, RECOVERY), "`f` (a primary)" if role == "primary" else
                  "`t` (a standby)")]


def _others_gone(sh: Shell, step: Step, move: Move) -> list[Check]:
    site, role, primary = step.params["site"], step.params["role"], step.params["primary"]
    return [Check(sh.psql(o, RECOVERY), "`f`: the primary it will follow" if o == primary
                  else ("an error (it does not answer) or `t`" if role == "primary" else
                        "an error or `t`"))
            for o in sh.config.sites if o != site]


def _app_runs(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check(f"curl -sS {sh.site(step.params['site']).app_url}/healthz",
                  '`"status":"ok"`')]


REBUILD: dict[str, StepText] = {
    "check_rebuild": StepText(
        "Makes sure {site} can still become the {role}: as the primary, no other site may "
        "answer as one (else it is their standby); as a standby, {primary} must be the one "
        "primary.",
        "Nothing has changed yet. A primary that answers after all: rebuild {site} as its "
        "standby (--as standby), or fence it first.",
        _others_gone),
    "provision": StepText(
        "Makes {site}'s host through the provider's API, with its reserved address, and "
        "cloud-init user-data that installs and starts the site agent; waits until the agent "
        "answers. The tool finds what it made earlier (by name), so a retry makes nothing "
        "twice.",
        "Look at the provider's console for the server failover-{site} and its cloud-init "
        "log (/var/log/cloud-init-output.log on it). A host with another address than the "
        "reserved one: put that address in the config and run the command again.",
        _agent_answers, _provision),
    "restore_database": StepText(
        "Restores {site}'s database through its agent with pgBackRest from the first "
        "repository that serves a backup (the nearest first), to the end of the archived WAL "
        "or to a time; as a standby it then streams from the primary.",
        "The tool tries the next repository by itself. By hand, run the block again with the "
        "next repository's options; `--delta` keeps what was already restored.",
        _restored, _restore_database),
    "start_app": StepText(
        "Starts {site}'s app through its agent, which runs it from then on (restarting it if "
        "it stops). By hand: the agent starts the app with the server when its unit starts.",
        "Read the app's log on the host; `systemctl restart failover-agent` there starts "
        "both again.",
        _app_runs),
}
