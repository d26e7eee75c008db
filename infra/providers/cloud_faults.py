"""The faults a provider's API can do safely to a real deployment: a server off, then on.

On a real cloud a drill cannot freeze a site's processes from outside; what it
can do without harm is what the provider's console offers. ``HcloudPower``
powers a Hetzner Cloud server off (the API's ``poweroff``: the plug pulled,
no clean shutdown, as a host that dies) and on. ``Ec2Power`` stops an EC2
instance (forced, for the same reason) and starts it. Both wait until the
provider says the change is done, do nothing to a server already in the state
asked for, and return a sentence for the drill's timeline. A server is named
as the provider knows it: a Hetzner server's name, an EC2 instance's id or
``Name`` tag. Every failure is one ``ProviderError`` line (an unknown server,
a refused token, a provider that cannot be reached or never finishes).

``CloudFaults`` maps a deployment's sites to their servers: ``kill_site`` and
``power_on_site`` are the fault injector's "kill a site" and its undoing.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import botocore.exceptions
import requests
from hcloud import APIException, HCloudException
from hcloud import Client as HcloudClient
from hcloud.servers import BoundServer

from failover.aws import load_credentials
from failover.exceptions import ConfigError, ProviderError
from failover.waiting import WaitTimeout, wait_for
from failover.watch.providers.ec2 import Ec2ApiConfig, ec2_client
from failover.watch.providers.hcloud import HcloudApiConfig, hcloud_token

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import WaiterConfigTypeDef

HCLOUD_OFF, HCLOUD_ON = "off", "running"  # a Hetzner server's status once done
EC2_OFF, EC2_ON = "stopped", "running"
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
# Every state but terminated: a terminated instance keeps its tag for an hour.
EC2_LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]

_T = TypeVar("_T")


class PowerSwitch(Protocol):
    """A provider's servers, powered off and on by name; each call returns a sentence."""

    def power_off(self, server: str) -> str:
        """Power ``server`` off and wait until it is off."""
        ...

    def power_on(self, server: str) -> str:
        """Power ``server`` on and wait until it runs."""
        ...

    def state(self, server: str) -> str:
        """What the provider says of ``server`` now (e.g. running, off, stopped)."""
        ...


class HcloudPower:
    """A Hetzner Cloud project's servers, powered off and on through its API.

    hcloud's own retry policy stays: it retries a timed-out request and only
    the errors Hetzner calls transient (rate limit, conflict, gateway), which
    is safe here since powering off twice is powering off. An action is read
    every ``poll`` seconds until it ends or ``timeout`` passes.
    """

    def __init__(self, client: HcloudClient, *, timeout: float = 300.0,
                 poll: float = 1.0) -> None:
        self.client = client
        self.timeout = timeout
        self.poll = poll

    @classmethod
    def from_config(cls, api: HcloudApiConfig, *, timeout: float = 300.0,
                    poll: float = 1.0) -> HcloudPower:
        """The project a site's ``api`` (kind hcloud) names, with its token from the 0600 file."""
        client = HcloudClient(token=hcloud_token(api), api_endpoint=api.endpoint,
                              timeout=api.timeout, application_name="failover-drill")
        return cls(client, timeout=timeout, poll=poll)

    def power_off(self, server: str) -> str:
        """Power the server off (``poweroff``), wait until it is off; a sentence."""
        return self._power(server, "power off", HCLOUD_OFF)

    def power_on(self, server: str) -> str:
        """Power the server on (``poweron``), wait until it runs; a sentence."""
        return self._power(server, "power on", HCLOUD_ON)

    def state(self, server: str) -> str:
        """The server's status as Hetzner says it (running, off, stopping...)."""
        return str(self._call(f"look up {server}", lambda: self._server(server)).status)

    def _server(self, name: str) -> BoundServer:
        found = self.client.servers.get_by_name(name)
        if found is None:
            raise ProviderError(f"hcloud: no server named {name!r} in this project",
                                provider="hcloud", code="not_found")
        return found

    def _power(self, name: str, verb: str, done: str) -> str:
        started = time.monotonic()
        what = f"{verb} {name}"
        server = self._call(what, lambda: self._server(name))
        if server.status == done:
            return f"hcloud: server {name} (id {server.id}) is already {done}; left as it is"
        call = server.power_off if done == HCLOUD_OFF else server.power_on
        action = self._call(what, call)

        def finished() -> bool:
            action.reload()
            return action.status != "running"

        try:
            self._call(what, lambda: wait_for(finished, timeout=self.timeout, interval=self.poll,
                                              what=f"hcloud action {action.id}", retry_on=()))
        except WaitTimeout as exc:
            raise ProviderError(f"hcloud {what}: action {action.id} still running after "
                                f"{self.timeout:g} s", provider="hcloud", code="timeout") from exc
        if action.status != "success":
            code, message = ((action.error["code"], action.error["message"])
                             if action.error else ("action_failed", "no reason given"))
            raise ProviderError(f"hcloud {what}: action {action.id} ended {action.status}: "
                                f"{code}: {message}", provider="hcloud", code=code)
        past = "powered off" if done == HCLOUD_OFF else "powered on"
        return (f"hcloud: server {name} (id {server.id}) {past} (action {action.id}, "
                f"{time.monotonic() - started:.1f} s)")

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``, its failure as one ProviderError line."""
        try:
            return call()
        except APIException as exc:
            raise ProviderError(f"hcloud {what}: {exc.code}: {exc.message}", provider="hcloud",
                                code=str(exc.code), request_id=exc.correlation_id) from exc
        except (requests.exceptions.RequestException, HCloudException) as exc:
            raise ProviderError(f"hcloud {what}: {type(exc).__name__}: {exc}",
                                provider="hcloud", code="unreachable") from exc


class Ec2Power:
    """An AWS account's EC2 instances, stopped and started through its API.

    A stop is forced (``Force=True``): the instance gets no chance to flush its
    caches, as a host that dies would not. boto3 retries throttling and
    transient errors with its standard policy; stopping or starting twice is
    harmless. The state is polled every ``poll`` seconds (whole: boto3's
waiters count in seconds) until ``timeout``.
    """

    def __init__(self, client: EC2Client, *, timeout: float = 600.0, poll: int = 5,
                 force: bool = True) -> None:
        self.client = client
        self.timeout = timeout
        self.poll = poll
        self.force = force

    @classmethod
    def from_config(cls, api: Ec2ApiConfig, *, timeout: float = 600.0,
                    poll: int = 5) -> Ec2Power:
        """The account a site's ``api`` (kind ec2) names, its keys from the 0600 file if any."""
        creds = load_credentials(api.credentials_file) if api.credentials_file else {}
        client = ec2_client(api, creds, api.timeout, attempts=3)
        return cls(client, timeout=timeout, poll=poll)

    def power_off(self, server: str) -> str:
        """Stop the instance (forced), wait until it is stopped; a sentence."""
        return self._power(server, "stop", EC2_OFF)

    def power_on(self, server: str) -> str:
        """Start the instance, wait until it runs; a sentence."""
        return self._power(server, "start", EC2_ON)

    def state(self, server: str) -> str:
        """The instance's state as EC2 says it (running, stopped, stopping...)."""
        return self._call(f"look up {server}", lambda: self._instance(server))[1]

    def _instance(self, server: str) -> tuple[str, str]:
        """(instance id, state) of an instance named by its id or its Name tag."""
        if INSTANCE_ID.fullmatch(server):
            answer = self.client.describe_instances(InstanceIds=[server])
        else:
            answer = self.client.describe_instances(Filters=[
                {"Name": "tag:Name", "Values": [server]},
                {"Name": "instance-state-name", "Values": EC2_LIVE}])
        found = [(i["InstanceId"], i["State"]["Name"])
                 for r in answer["Reservations"] for i in r["Instances"]]
        if not found:
            raise ProviderError(f"EC2: no instance {server!r} in {self._where()}",
                                provider="ec2", code="not_found")
        if len(found) > 1:
            raise ProviderError(f"EC2: {len(found)} instances are named {server!r} "
                                f"({', '.join(i for i, _ in found)}): name one by its id",
                                provider="ec2", code="ambiguous")
        return found[0]

    def _where(self) -> str:
        return f"region {self.client.meta.region_name}"

    def _power(self, server: str, verb: str, done: str) -> str:
        started = time.monotonic()
        what = f"{verb} {server}"
        instance, state = self._call(what, lambda: self._instance(server))
        named = server if server == instance else f"{server} ({instance})"
        if state == done:
            return f"EC2: instance {named} is already {done}; left as it is"
        if done == EC2_OFF:
            self._call(what, lambda: self.client.stop_instances(InstanceIds=[instance],
                                                                Force=self.force))
        else:
            self._call(what, lambda: self.client.start_instances(InstanceIds=[instance]))
        self._call(what, lambda: self._wait(instance, done))
        past = "stopped" if done == EC2_OFF else "started"
        return f"EC2: instance {named} {past} ({time.monotonic() - started:.1f} s)"

    def _wait(self, instance: str, done: str) -> None:
        """Until EC2 says the instance is ``done`` (stopped or running), polling."""
        config: WaiterConfigTypeDef = {"Delay": self.poll,
                                       "MaxAttempts": max(1, math.ceil(self.timeout / self.poll))}
        if done == EC2_OFF:
            self.client.get_waiter("instance_stopped").wait(InstanceIds=[instance],
                                                            WaiterConfig=config)
        else:
            self.client.get_waiter("instance_running").wait(InstanceIds=[instance],
                                                            WaiterConfig=config)

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``, its failure as one ProviderError line."""
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
            code = error.get("Code", "unknown")
            raise ProviderError(f"EC2 {what}: {code}: {error.get('Message', exc)}",
                                provider="ec2", code=code,
                                request_id=meta.get("RequestId")) from exc
        except botocore.exceptions.WaiterError as exc:
            raise ProviderError(f"EC2 {what}: not done after {self.timeout:g} s: {exc}",
                                provider="ec2", code="timeout") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ProviderError(f"EC2 {what}: {type(exc).__name__}: {exc}", provider="ec2",
                                code="unreachable") from exc


@dataclass(frozen=True)
class Machine:
    """The server a site runs on, and the provider's switch for it."""

    power: PowerSwitch
    server: str  # as the provider names it


class CloudFaults:
    """A real deployment's sites, each on a server its provider can power off and on."""

    def __init__(self, machines: Mapping[str, Machine]) -> None:
        self.machines = dict(machines)

    def _machine(self, site: str) -> Machine:
        try:
            return self.machines[site]
        except KeyError:
            known = ", ".join(sorted(self.machines)) or "none"
            raise ConfigError(f"no server is known for site {site!r} (known: {known})") \
                from None

    def kill_site(self, site: str) -> str:
        """Power the site's server off, as a host that dies; a sentence."""
        return f"{site}: {self._machine(site).power.power_off(self._machine(site).server)}"

    def power_on_site(self, site: str) -> str:
        """Power the site's server back on; a sentence (its agent then restarts its services)."""
        return f"{site}: {self._machine(site).power.power_on(self._machine(site).server)}"
