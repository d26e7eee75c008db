"""The controller's probes: asynchronous looks at apps, databases, DNS and provider APIs.

A probe turns one look at one target from one vantage point into an
``Observation`` and never raises: a timeout, a refusal or a wrong answer is an
observation with status down and one line saying why. Each look is bounded
by the probe's timeout with ``asyncio.timeout``, whatever the library under it
would wait for. ``ProbeScheduler`` runs every probe on its own drift-free
schedule, hundreds of them on one event loop and one core.

Connections are kept between looks (HTTP keep-alive, one PostgreSQL session
per database), because a look every second at hundreds of targets must not
cost a TCP handshake, a PostgreSQL backend fork and a TIME_WAIT socket each
time. A kept connection that fails is dropped and the next look connects
afresh; one that the server closed while idle gets one fresh try inside the
same deadline, since it says nothing about the server now.

One module per concern: ``contract`` (the Probe protocol, Observations),
``scheduler``, one module per kind of probe (``http``, ``database``, ``dns``,
``api``) and ``wiring`` (``build_probes``). What depends on a DNS provider's
or a provider API's kind comes from that plane's registry
(``failover.dns.registry``, ``failover.watch.providers``).
"""

from failover.dns.authoritative import AuthoritativeReader
from failover.dns.registry import ApiReader, DnsReader
from failover.watch.probes.api import ApiCheck, ApiProbe
from failover.watch.probes.contract import Facts, Finding, Probe, observe, one_line
from failover.watch.probes.database import APPLICATION_NAME, DatabaseProbe
from failover.watch.probes.dns import DnsProbe
from failover.watch.probes.http import HttpProbe, VantageClient
from failover.watch.probes.scheduler import Clock, ProbeScheduler, ProbeTrack, Sleep
from failover.watch.probes.wiring import build_probes

__all__ = [
    "APPLICATION_NAME", "ApiCheck", "ApiProbe", "ApiReader", "AuthoritativeReader", "Clock",
    "DatabaseProbe", "DnsProbe", "DnsReader", "Facts", "Finding", "HttpProbe", "Probe",
    "ProbeScheduler", "ProbeTrack", "Sleep", "VantageClient", "build_probes", "observe",
    "one_line",
]
