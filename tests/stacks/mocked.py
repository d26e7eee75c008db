"""The stacks under Pulumi's mocks: no engine, no provider, no network.

``RecordingMocks`` stands in for the providers (a fake, named as one): it
records every resource the program registers, with the inputs the provider
would get, and makes up the outputs a provider computes (addresses, ids, ARNs,
keys, random values) so that nothing stays unknown. ``deploy`` runs a program
under it and returns what was made and what the stack would export, each
output with whether it is a Pulumi secret.

Pulumi's runtime is process-wide, and its root stack resource is bound to the
event loop it was made on: ``deploy`` sets the runtime up anew each time (other
tests in the same process change the thread's loop). The program makes nothing
when imported, so its modules may be imported before any mocks are set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws
import yaml
from pulumi.runtime.mocks import MockMonitor

from tests.stacks.projects import SITES

# pulumi-aws loads its modules lazily, and loading one warns (Python's warnings) about the
# deprecated classes it defines (s3.BucketV2, ...), used or not: loaded here, quietly. What
# a stack itself uses that is deprecated, the SDK tells the engine (Deployed.warnings).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    # A class of each: the modules load on the first look inside them.
    for _module, _class in (("ec2", "Instance"), ("iam", "User"), ("route53", "Zone"),
                            ("s3", "Bucket"), ("vpc", "SecurityGroupIngressRule")):
        getattr(getattr(pulumi_aws, _module), _class)

PROJECT_DIR = Path(__file__).resolve().parents[2] / "stacks"
# The sites' addresses as the mocked providers hand them out (documentation ranges).
ADDRESSES = {"aws-primary": "203.0.113.10", "hetzner-standby": "203.0.113.20",
             "spare": "203.0.113.30"}
CONTROLLER = "198.51.100.7"
ADMIN = "192.0.2.0/24"
HETZNER_KEYS = {"failover:hetznerS3AccessKey": "MOCKHETZNERACCESSKEY",
                "failover:hetznerS3SecretKey": "mock-hetzner-secret-key-0123456789"}
_SECRET_SIG = pulumi.runtime.rpc._special_secret_sig
_SIG_KEY = pulumi.runtime.rpc._special_sig_key


@dataclass(frozen=True)
class Made:
    """One resource the program registered: its type token, name, inputs and id."""

    type: str
    name: str
    inputs: dict[str, Any]  # as the provider would get them; secrets still wrapped
    id: str
    provider: str  # the explicit provider's reference (URN::id), or "" for the default

    def made_by(self, provider: Made) -> bool:
        """Whether this resource is made through that (explicit) provider."""
        return self.provider.endswith(f"::{provider.name}::{provider.id}")


def is_secret(value: Any) -> bool:
    """Whether an input reached the provider as a Pulumi secret."""
    return isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG


def plain(value: Any) -> Any:
    """An input's value, secrets unwrapped (nested too)."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def _fake(name: str, length: int) -> str:
    """A made-up value, the same for the same name (no randomness in a test)."""
    return hashlib.sha256(name.encode()).hexdigest()[:length]


class RecordingMocks(pulumi.runtime.Mocks):
    """The providers, faked: each resource recorded, its computed outputs made up."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.made: list[Made] = []
        self._ids = itertools.count(1001)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        # Hetzner's ids are integers (the program turns them into ints); others are text.
        id_ = str(next(self._ids)) if args.typ.startswith("hcloud:") else f"{args.name}-id"
        state = {**inputs, **self._computed(args.typ, args.name, inputs)}
        self.made.append(Made(args.typ, args.name, inputs, id_, args.provider or ""))
        return id_, state

    def _computed(self, typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """What the provider would compute for a new resource of this type."""
        if typ == "aws:ec2/eip:Eip":
            return {"publicIp": self.address, "allocationId": f"eipalloc-{_fake(name, 8)}"}
        if typ == "hcloud:index/primaryIp:PrimaryIp":
            return {"ipAddress": self.address}
        if typ == "aws:s3/bucket:Bucket":
            return {"arn": f"arn:aws:s3:::{inputs.get('bucket')}"}
        if typ == "aws:iam/user:User":
            return {"arn": f"arn:aws:iam::123456789012:user/{inputs.get('name')}"}
        if typ == "aws:route53/zone:Zone":
            zone_id = f"Z{_fake(name, 12).upper()}"
            return {"zoneId": zone_id, "arn": f"arn:aws:route53:::hostedzone/{zone_id}",
                    "nameServers": ["ns-1.awsdns-00.org.", "ns-2.awsdns-00.net."]}
        if typ == "aws:iam/accessKey:AccessKey":
            return {"secret": f"mock-iam-secret-{_fake(name, 24)}"}
        if typ == "random:index/randomPassword:RandomPassword":
            return {"result": f"mock{_fake(name, int(inputs['length']) - 4)}"}
        if typ == "random:index/randomBytes:RandomBytes":
            raw = hashlib.sha256(name.encode()).digest()[: int(inputs["length"])]
            return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
        return {}

    # The monitor takes a plain dict (no check failures) as well as the stub's tuple.
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0mockdebian12", "imageId": "ami-0mockdebian12",
                    "name": "debian-12-amd64-20260101-0000"}
        raise AssertionError(f"the program called {args.token}, which these mocks lack")


class RecordingMonitor(MockMonitor):
    """Pulumi's mock monitor, also noting the resources that registered their outputs."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.with_outputs: list[str] = []

    def RegisterResourceOutputs(self, request: Any) -> Any:  # the monitor's gRPC name
        self.with_outputs.append(request.urn)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    def parents(self) -> dict[tuple[str, str], str | None]:
        """Each resource's parent's type, by (type, name): a URN's type is parent$type."""
        found = {}
        for urn in self.resources:
            qualified, name = urn.split("::")[2:4]
            *parent, typ = qualified.split("$")
            found[(typ, name)] = parent[-1] if parent else None
        return found


@dataclass(frozen=True)
class Deployed:
    """A stack as the mocks saw it: what it made, and what it exports."""

    stack: str
    made: list[Made]
    outputs: dict[str, Any]  # plain values
    secret: frozenset[str]  # the outputs that are Pulumi secrets
    parents: dict[tuple[str, str], str | None]  # (type, name) -> the parent's type
    with_outputs: frozenset[str]  # the types of the resources that registered outputs
    warnings: list[str]  # what the SDKs told the engine as warnings (deprecations...)

    def of_type(self, typ: str) -> list[Made]:
        """The resources of one type token, in the order they were made."""
        return [made for made in self.made if made.type == typ]

    def one(self, typ: str) -> Made:
        """The one resource of a type (an AssertionError when there are more or none)."""
        (found,) = self.of_type(typ)
        return found

    def one_named(self, name: str, typ: str | None = None) -> Made:
        """The one resource of a name (and type, when two types share the name)."""
        (found,) = [made for made in self.made
                    if made.name == name and typ in (None, made.type)]
        return found


class _EngineLog(logging.Handler):
    """The mock engine's log: what the program and the SDKs said at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []
        self.logger = logging.getLogger(f"pulumi-engine-{id(self)}")
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings.append(record.getMessage())


def _open_loop() -> None:
    """An open event loop for this thread: an earlier test may have closed or unset it."""
    try:
        closed = asyncio.get_event_loop().is_closed()
    except RuntimeError:
        closed = True
    if closed:
        asyncio.set_event_loop(asyncio.new_event_loop())


async def _resolved(outputs: Mapping[str, Any]) -> dict[str, tuple[Any, bool]]:
    """Each output's plain value, and whether the engine would call the output secret."""
    resolved = {}
    for name, value in outputs.items():
        # from_input would call a mapping secret when anything inside it is; the engine
        # keeps such secrets where they are, and `pulumi stack output` (so the Automation
        # API) calls an output secret only when its whole value is: only a secret Output
        # at the top counts.
        secret = isinstance(value, pulumi.Output) and await value.is_secret()
        resolved[name] = (await pulumi.Output.from_input(value).future(), secret)
    return resolved


def deploy(program: Callable[[], Mapping[str, Any]], *, stack: str,
           address: str | None = None) -> Deployed:
    """Run ``program`` (it returns the stack's outputs) as stack ``stack``, under mocks."""
    mocks = RecordingMocks(address or ADDRESSES.get(stack, "203.0.113.99"))
    monitor = RecordingMonitor(mocks)
    log = _EngineLog()
    _open_loop()
    pulumi.runtime.settings.reset_options(project="failover", stack=stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project="failover", stack=stack, preview=False,
                             monitor=monitor, logger=log.logger)
    seen: dict[str, tuple[Any, bool]] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]  # the SDK leaves it untyped
    def run() -> pulumi.Output[None]:
        # from_input awaits a coroutine too (its stub says less).
        resolved: pulumi.Output[dict[str, tuple[Any, bool]]] = pulumi.Output.from_input(
            _resolved(program()))
        return resolved.apply(seen.update)

    run()
    return Deployed(stack, mocks.made, {name: value for name, (value, _) in seen.items()},
                    frozenset(name for name, (_, secret) in seen.items() if secret),
                    monitor.parents(),
                    frozenset(urn.split("::")[2].split("$")[-1] for urn in monitor.with_outputs),
                    log.warnings)


def stack_config(stack: str) -> dict[str, Any]:
    """A stack's checked-in configuration (``stacks/Pulumi.<stack>.yaml``)."""
    data = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = data["config"]
    return config


def site_config(stack: str, **changes: Any) -> dict[str, Any]:
    """A stack's checked-in config with the peers, controller and secrets a real one gets
    after the first `up`; ``changes`` replace keys (``failover_role="standby"``)."""
    site = SITES[stack]
    config = {**stack_config(stack), "failover:access": {
        "peers": {SITES[other]: ADDRESSES[other] for other in SITES if other != stack},
        "controller": [CONTROLLER], "admin": [ADMIN]}}
    if config["failover:provider"] == "hetzner":
        config.update(HETZNER_KEYS)
    assert config["failover:site"] == site
    config.update({key.replace("_", ":", 1): value for key, value in changes.items()})
    return config


def use_config(config: Mapping[str, Any]) -> None:
    """Make ``config`` the stack's configuration, as Pulumi's engine hands it to a program."""
    pulumi.runtime.set_all_config(
        {key: value if isinstance(value, str) else json.dumps(value)
         for key, value in config.items()},
        secret_keys=[key for key in config if key in HETZNER_KEYS])


def deploy_site(stack: str, **changes: Any) -> Deployed:
    """A site's stack from its checked-in config (see ``site_config``), as `up` runs it."""
    # Imported here: pulumi's runtime must have its mocks before the program is imported.
    from infra.components.program import site_stack
    from infra.components.settings import load_settings

    use_config(site_config(stack, **changes))
    return deploy(lambda: site_stack(load_settings()), stack=stack)


def all_sites(**changes_by_stack: dict[str, Any]) -> Iterator[Deployed]:
    """Every checked-in stack, deployed under mocks, with per-stack changes."""
    for stack in SITES:
        yield deploy_site(stack, **changes_by_stack.get(stack.replace("-", "_"), {}))

