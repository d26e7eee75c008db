"""Fixtures of the agent's unit tests: an agent that is never begun, its API in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.agent.agent import Agent
from failover.agent.config import AgentConfig
from failover.agent.server import AgentServer
from tests.conftest import free_port
from tests.failover.agent.served import Served, agent_config


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    """A config whose API port is free and whose database is down."""
    return agent_config(tmp_path / "agent", free_port())


@pytest.fixture
def agent(config: AgentConfig) -> Iterator[Agent]:
    """The agent, not begun: no child is started."""
    built = Agent(config)
    try:
        yield built
    finally:
        built.shutdown()


@pytest.fixture
def served(agent: Agent) -> Iterator[Served]:
    """The agent's HTTP API, served in process; shut down at the end."""
    server = AgentServer(agent)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    host, port = agent.config.address
    try:
        yield Served(agent, f"http://{host}:{port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
