"""The words and commands of the steps at the edges: DNS, objects, the apps."""

from __future__ import annotations

from failover.engine.plan import Step
from failover.runbooks import dnscommands
from failover.runbooks.model import Block, Check, Move, StepText
from failover.runbooks.shell import Shell


def _ttl(sh: Shell, step: Step) -> int:
    ttl = step.params.get("ttl")
    return sh.deployment.normal_ttl if ttl is None else int(ttl)


def _dns_answers(sh: Shell, step: Step, move: Move) -> list[Check]:
    return dnscommands.look(sh, sh.records(step.params["site"], _ttl(sh, step)))


def _dns_publish(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    return dnscommands.publish(sh, sh.records(site, _ttl(sh, step)),
                               f"{step.action} {site}")


def _cached(sh: Shell, step: Step, move: Move) -> list[Check]:
    return dnscommands.look(sh, sh.records(move.from_site, sh.config.dns.low_ttl))


def _wait_cached(sh: Shell, step: Step, move: Move) -> list[Block]:
    return [Block(f"sleep {sh.deployment.normal_ttl}", "From the moment the low TTL was "
                  "published (less if it was published that long ago):")]


def _objects_counted(sh: Shell, step: Step, move: Move) -> list[Check]:
    source, target = step.params["from"], step.params["to"]
    return [Check(sh.count_objects(source), f"`Total Objects: N` at {source}"),
            Check(sh.count_objects(target), f"at least N at {target}")]


def _sync_objects(sh: Shell, step: Step, move: Move) -> list[Block]:
    source, target = step.params["from"], step.params["to"]
    return [Block(sh.sync_objects(source, target), f"Copy {source}'s bucket to {target}'s "
                  "through a local folder (the two stores are apart; `s3 sync` copies only "
                  "what is missing or differs):")]


def _writable(sh: Shell, step: Step, move: Move) -> list[Check]:
    return [Check(sh.readyz(step.params["site"]), '`"role":"primary"` and `"writable":true`')]


def _wait_writable(sh: Shell, step: Step, move: Move) -> list[Block]:
    site = step.params["site"]
    return [Block(sh.wait_writable(site), f"Wait until {site}'s app says it takes writes:")]


EDGE: dict[str, StepText] = {
    "lower_ttl": StepText(
        "Publishes {site}'s records unchanged but with TTL {ttl} s at every DNS provider, so "
        "that once the records move, resolvers let go of the old answer within {ttl} s "
        "instead of {normal_ttl} s.",
        "A provider that refuses is a warning: the tool goes on with the others (clients of "
        "that provider follow the move up to {normal_ttl} s later). When none takes it the "
        "step fails and nothing else has changed: check the key or credentials file the "
        "provider's block names and that its server answers, then run the command again.",
        _dns_answers, _dns_publish),
    "wait_low_ttl": StepText(
        "Waits until answers cached with the normal TTL ({normal_ttl} s) before the TTL was "
        "lowered have expired everywhere: after this, no resolver holds the old address for "
        "longer than {low_ttl} s.",
        "It only waits. A deadline passed (a run resumed long after) is met by running the "
        "command again.",
        _cached, _wait_cached),
    "switch_dns": StepText(
        "Points the records at {site} (TTL {ttl} s) at every DNS provider and reads each "
        "back: from here on clients reach the new primary's app.",
        "A provider that refuses is a warning (exit 3): publish its block by hand once it "
        "answers. When none takes it the step fails and clients keep the old address (a "
        "fenced old primary's app answers them 503 at once): publish by hand, or run the "
        "command again.",
        _dns_answers, _dns_publish),
    "restore_ttl": StepText(
        "Publishes {site}'s records with their normal TTL ({normal_ttl} s) again: the low TTL "
        "is for moves only (every resolver asks {normal_ttl}/{low_ttl} times as often while "
        "it lasts).",
        "Harmless to leave for a while: the records already point at {site}. Run the command "
        "again, or publish by hand.",
        _dns_answers, _dns_publish),
    "sync_objects": StepText(
        "Copies the objects (the app's media) that {to}'s bucket lacks from {from}'s, and "
        "checks them against the listing it copied from. The sites' agents copy objects all "
        "the time; this makes sure nothing is left behind at the move.",
        "Before the move it fails the run, and nothing has changed yet: is {from}'s store "
        "reachable with the credentials file its block names? After the move (best effort) "
        "a failure is a warning: copy by hand once {from}'s store answers.",
        _objects_counted, _sync_objects),
    "wait_writable": StepText(
        "Waits until {site}'s app says it takes writes (its /readyz: role primary, writable): "
        "DNS is not moved to an app that would refuse them.",
        "The app does not see its database as a writable primary: read its log and "
        "`failover status`. Its lease, if a controller ran, may refuse writes: the controller "
        "renews the new primary's lease when it runs again.",
        _writable, _wait_writable),
}
