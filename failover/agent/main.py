"""Running an agent: ``python -m failover.agent --config FILE`` or ``failover agent run``.

The module entry point imports only what the agent needs (not the whole
command line), so each of the lab's agents stays small in memory.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from failover.agent.agent import Agent
from failover.agent.config import load_agent_config
from failover.agent.server import AgentServer
from failover.exceptions import ConfigError, FailoverError
from failover.logs import log_event

log = logging.getLogger("failover.agent")


def run_agent(config_file: Path) -> None:
    """Run the agent in the foreground until SIGTERM, SIGINT or SIGHUP; then stop its children."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(message)s")
    config = load_agent_config(config_file)
    agent = Agent(config)
    try:
        server = AgentServer(agent)
    except OSError as exc:
        raise ConfigError(f"the agent cannot listen on {config.listen}: {exc.strerror}") \
            from None

    def stop(signum: int, _frame: FrameType | None) -> None:
        log_event(log, "agent.stop", signal=signal.Signals(signum).name)
        # shutdown() waits for serve_forever to return: not from the thread that runs it.
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    agent.begin()
    log_event(log, "agent.listen", site=config.site, url=f"http://{config.listen}")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        agent.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m failover.agent``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m failover.agent",
                                     description="Run a site's agent (see: failover agent -h).")
    parser.add_argument("--config", required=True, type=Path, help="the agent's agent.yaml")
    args = parser.parse_args(argv)
    try:
        run_agent(args.config)
    except FailoverError as exc:
        print(f"failover agent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
