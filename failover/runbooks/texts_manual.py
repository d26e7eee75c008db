"""The words and commands of steps the tool has no action for: done by hand only.

The moves that are no plan of the engine (a lost DNS provider, revoked
credentials, the tool itself down) add these around the plan's steps: what
to look at first, what only a person can do (a registrar's delegation, new
keys from a provider's console), and what to tell the tool afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from failover.engine.plan import Step
from failover.runbooks import dnscommands
from failover.runbooks.model import Block, Check, Move, StepText
from failover.runbooks.shell import Shell, aws_cli
from failover.watch.providers import Ec2ApiConfig, HcloudApiConfig

REFUSED = ("an error such as `InvalidAccessKeyId`, `InvalidClientTokenId`, "
           "`SignatureDoesNotMatch`, `AccessDenied` or `unauthorized` says they are revoked")


def _ec2(sh: Shell, api: Ec2ApiConfig) -> str:
    return (f"{aws_cli(api.region, api.endpoint_url, sh.path(api.credentials_file))} ec2 "
            "describe-instances --max-items 1 --query 'Reservations[].Instances[].InstanceId'")


def _hcloud(sh: Shell, api: HcloudApiConfig) -> str:
    endpoint = "" if api.endpoint.startswith("https://api.hetzner.cloud")\
        else f"HCLOUD_ENDPOINT={api.endpoint} "
    return (f'HCLOUD_TOKEN="$(cat {sh.shown(api.token_file)})" {endpoint}hcloud server list '
            "-o noheader")


API: dict[str, Callable[[Shell, Any], str]] = {"ec2": _ec2, "hcloud": _hcloud}


def _credentials_answer(sh: Shell, step: Step, move: Move) -> list[Check]:
    site = step.params["site"]
    spec, store = sh.site(site), sh.store(site)
    out = [Check(f"{sh.s3(site)} s3api list-objects-v2 --bucket {store.bucket} --max-keys 1 "
                 "--query KeyCount", f"a number (0 or 1) from {site}'s object store; {REFUSED}")]
    if spec.api is not None and spec.api.kind in API:
        out.append(Check(API[spec.api.kind](sh, spec.api), f"a list (maybe empty) from {site}'s "
                         f"provider API ({spec.api.kind}); {REFUSED}"))
    for name, dns in sh.config.dns_providers.items():
        if dns.kind == "route53":  # its keys may be the same account's
            aws = aws_cli(dns.region, dns.endpoint_url, sh.path(dns.credentials_file))
            out.append(Check(f"{aws} route53 list-hosted-zones-by-name --dns-name {dns.zone} "
                             "--max-items 1 --query 'HostedZones[0].Name'",
                             f"`\"{dns.zone}\"` ({name}); {REFUSED}"))
    return out


def _new_credentials(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    files = sorted({f for f in (sh.path(sh.store(site).credentials_file),
                                *[sh.path(getattr(sh.site(site).api, n, None))
                                  for n in ("credentials_file", "token_file")]) if f})
    lines = [f"# New keys from {site}'s provider console, each into the file that names it "
             "(0600):"]
    lines += [f"install -m 600 /dev/null {f}.new && ${{EDITOR:-vi}} {f}.new && mv {f}.new {f}"
              for f in files]
    return [Block("\n".join(lines), "Write each file anew (the tool reads them at every "
                  "command; restart `failover watch` and the site's agent, which read them "
                  "once):")]


def _provider_answers(sh: Shell, step: Step, move: Move) -> list[Check]:
    records = sh.records(step.params["site"])
    tool = Check("failover status --json | jq '.dns'", f"`{step.params['provider']}` with an "
                 "`error`, or answers that are not the primary's")
    return [*dnscommands.look(sh, records, only=step.params["provider"]), tool]


def _delegated(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check(f"dig +short NS {sh.config.dns.zone}", "only the name servers of the "
                  "providers that are left (once the parent zone's TTL has passed)")]


def _delegate(sh: Shell, step: Step, move: Move) -> list[Block]:
    provider, zone = step.params["provider"], sh.config.dns.zone
    return [Block(f"# At {zone}'s registrar (or in its parent zone): remove {provider}'s name "
                  "servers from the delegation,\n# keep the others'. Put them back once "
                  f"{provider} serves the zone again (after the records are republished "
                  "there).")]


def _providers_left(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check("failover status --json | jq '.dns | keys'", "the DNS providers left, "
                  f"without `{step.params['provider']}`")]


def _drop_provider(sh: Shell, step: Step, move: Move) -> list[Block]:
    provider = step.params["provider"]
    return [Block(f"# In the deployment's failover.yaml: move dns_providers.{provider} out (keep "
                  "it to put back);\n# then restart `failover watch`, which reads the file "
                  "once.")]


def _tool_answers(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check("failover --version", "`failover, version ...`"),
            Check("failover status", "a report (exit 0 or 1); a traceback, `error:` about "
                  "the journal or no answer: the tool is down"),
            Check(f"curl -sS http://{sh.config.watch.listen}/healthz", "an answer while "
                  "`failover watch` runs; `Connection refused` when it does not")]


def _controller_stopped(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check(f"curl -sS http://{sh.config.watch.listen}/healthz",
                  "`Connection refused` (or a timeout)")]


def _stop_controller(sh: Shell, step: Step, move: Move) -> list[Block]:
    return [Block("# Wherever `failover watch` runs: stop it (its unit, or Ctrl-C in its "
                  "terminal).\n# A controller that sees a move half done acts on what it "
                  "sees.")]


def _after(sh: Shell, step: Step, move: Move) -> list[Check]:
    site = step.params["site"]
    return [Check("failover status", f"primary {site}, each standby streaming from it, every "
                  "DNS provider answering it; no warning")]


def _tell_the_tool(sh: Shell, step: Step, move: Move) -> list[Block]:
    return [Block("failover status\n# an unfinished run it shows (`last_run`): give it up\n"
                  "# failover abandon RUN --reason 'finished by hand'",
                  "Once the tool works again (then start `failover watch` again):")]


MANUAL: dict[str, StepText] = {
    "check_dns_provider": StepText(
        "Finds out whether {provider} is lost (no answer, refused credentials, or answers "
        "that are not the primary's) while the others answer: moves go on without it, each "
        "with a warning, but resolvers that ask it get stale answers or none.",
        "If every provider fails the same way, the trouble is nearer: this machine's network "
        "or the credentials files.",
        _provider_answers),
    "update_delegation": StepText(
        "Takes {provider}'s name servers out of the zone's delegation, so that resolvers stop "
        "asking a provider that answers wrongly or not at all. Only the registrar can: the "
        "tool has no hand there.",
        "The parent zone's NS TTL (often a day) bounds how long resolvers keep asking "
        "{provider}: if it answers wrongly meanwhile, get its records right there first.",
        _delegated, _delegate),
    "drop_dns_provider": StepText(
        "Takes {provider} out of the tool's configuration, so that a move does not fail on it "
        "or warn every time; it goes back in once {provider} serves the zone again.",
        "A configuration the tool refuses says why, field by field: correct it.",
        _providers_left, _drop_provider),
    "check_credentials": StepText(
        "Finds out which of {site}'s credentials a provider has revoked: the object store's "
        "keys, the provider API's, Route 53's. The controller takes refused credentials for a "
        "termination notice: the provider is ending the service.",
        "Credentials that work after all: the provider's API had a bad moment; the controller "
        "looks again at its next tick.",
        _credentials_answer),
    "rotate_credentials": StepText(
        "Puts new credentials in the files the configuration names, once the provider gives "
        "them back (or for good, if they leaked).",
        "A provider that will not give new keys: the site is to be treated as lost; rebuild "
        "elsewhere (rebuild-from-backups.md).",
        _credentials_answer, _new_credentials),
    "check_tool": StepText(
        "Finds out that the tool itself cannot act: the CLI does not run, its journal or "
        "configuration cannot be read, or the controller does not answer. Then the move is "
        "done by hand, step by step, as below.",
        "If the CLI runs after all, use it: every move is journaled and resumable.",
        _tool_answers),
    "stop_controller": StepText(
        "Stops the controller, if it runs at all: a move by hand and a controller that acts on "
        "what it sees half-way would fight.",
        "A controller that cannot be stopped: cut it off from the sites' agents and databases "
        "(its host's firewall).",
        _controller_stopped, _stop_controller),
    "record_manual_move": StepText(
        "Tells the tool, once it works again, what was done by hand: it sees the world as it "
        "is (failover status); a run it had left unfinished is abandoned so that new moves "
        "may be planned.",
        "A status with warnings names what is still wrong: follow it.",
        _after, _tell_the_tool),
}
