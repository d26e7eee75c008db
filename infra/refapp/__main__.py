"""Run the reference app: ``python -m infra.refapp --host 127.0.10.1 --port 8080``.

Settings come from ``FAILOVER_*`` environment variables (see `settings`); a missing or
invalid one stops the start with a single line naming it, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from .api import create_app
from .settings import Settings, SettingsError, describe_dsn

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.refapp",
        description="Reference social app of the failover lab (one site's instance).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="TCP port to listen on")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="warning", help="default: warning"
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log every request (default: off)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and settings, then serve until SIGTERM/SIGINT."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"refapp: {exc}", file=sys.stderr)
        return 2

    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The pool logs every failed reconnection attempt; the app already logs when the
    # database goes away and comes back, so keep the pool quiet unless debugging.
    logging.getLogger("psycopg.pool").setLevel(max(level, logging.ERROR))
    logging.getLogger(__package__ or "infra.refapp").info(
        "site %s: database %s, bucket %s at %s",
        settings.site,
        describe_dsn(settings.database_dsn),
        settings.s3_bucket,
        settings.s3_endpoint,
    )

    # One process, one event loop: uvicorn handles SIGTERM/SIGINT by finishing
    # in-flight requests (bounded below) and running the lifespan shutdown.
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
