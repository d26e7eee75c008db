"""moto's server as the lab runs it: ``python -m infra.lab.moto_server --region R -H ADDR -p PORT``.

That is ``python -m moto.server -H ADDR -p PORT`` with one change. At its
first EC2 request moto loads, for every region and zone of AWS, which
instance types it offers: some 40 MiB of parsed JSON, in a process that
serves one region and never validates instance types (moto does not unless
told to). Here only the offerings of the regions named by ``--region`` are
loaded; the others answer as a region with no offerings would. Everything
the lab asks of S3, Route 53, EC2 and IAM is moto's as it ships.

The change reaches into moto (``moto.utilities.utils.load_resource``, which
its EC2 models take at import). If moto moves it, the server says so on
stderr and runs unchanged: larger, never different.

``preload`` is for ``infra.lab.prefork``, which forks the lab's servers from
one parent: it imports what a server needs at its first request, and reads
the botocore data moto keeps, so that the servers share them.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any

# moto's per-region data files: ec2/resources/instance_type_offerings/<kind>/<region>.json
OFFERINGS = re.compile(r"ec2/resources/instance_type_offerings/[^/]+/(?P<region>[^/.]+)\.json")
# The services the lab asks of moto (and moto's own API, which the lab's readiness checks use).
SERVICES = ("s3", "route53", "ec2", "iam", "sts", "moto_api")


def only_regions(load: Callable[[str], Any], regions: Collection[str]) -> Callable[[str], Any]:
    """``load`` (moto's ``load_resource``), but empty for other regions' instance offerings."""

    def load_resource(resource: str) -> Any:
        found = OFFERINGS.search(resource)
        if found and found["region"] not in regions:
            return []  # what moto's own code does with a region it has no file for
        return load(resource)

    load_resource.trimmed_to = frozenset(regions)  # type: ignore[attr-defined]
    return load_resource


def trim_offerings(regions: Collection[str]) -> bool:
    """Have moto's EC2 load the instance offerings of ``regions`` only; whether it does.

    Must run before moto's EC2 models are imported (moto imports them at the
    first EC2 request, so at start is early enough). Runs once: a second call
    with the same regions says whether the first one took.
    """
    from moto.utilities import utils

    load = getattr(utils, "load_resource", None)
    if getattr(load, "trimmed_to", None) == frozenset(regions):
        return True
    if load is None or "moto.ec2.models.instance_types" in sys.modules:
        return False
    utils.load_resource = only_regions(load, regions)  # type: ignore[assignment]
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.lab.moto_server", add_help=False,
        description="moto's server, loading EC2's instance offerings of some regions only.")
    parser.add_argument("--region", action="append", required=True,
                        help="a region whose offerings are kept (repeatable)")
    return parser


def preload(argv: Sequence[str]) -> None:
    """Import what a server of the lab's services needs, and the botocore data moto reads.

    Optional (a server does it all at its first request anyway), and reaching
    into moto: whatever is not where it was is left to that first request.
    """
    trim_offerings(_parser().parse_known_args(argv)[0].region)
    importlib.import_module("moto.server")
    for service in SERVICES:
        for module in ("models", "responses", "urls"):
            try:
                importlib.import_module(f"moto.{service}.{module}")
            except ImportError:
                continue
    try:
        from moto.core.base_backend import AccountSpecificBackend
        from moto.core.utils import get_service_model

        session = AccountSpecificBackend.get_session()  # moto asks it for regions
        for service in SERVICES[:-1]:
            get_service_model(service)  # what moto parses requests with, kept
            for partition in session.get_available_partitions():
                session.get_available_regions(service, partition_name=partition)
    except (ImportError, AttributeError):
        return


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: ``--region`` (repeatable), then moto.server's own options."""
    args, rest = _parser().parse_known_args(argv)
    if not trim_offerings(args.region):
        print("moto_server: moto's load_resource has moved; every region's instance offerings "
              "are loaded", file=sys.stderr, flush=True)
    from moto.server import main as moto_main

    try:
        from moto.moto_api._internal import mock_random
    except ImportError:
        pass
    else:  # seeded at import: a server forked from a parent that imported moto
        mock_random.seed()  # (infra.lab.prefork) would repeat its siblings' ids
    sys.argv[1:] = rest  # moto reads sys.argv when given no arguments
    moto_main(rest)


if __name__ == "__main__":
    main()
