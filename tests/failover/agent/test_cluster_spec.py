"""An agent config's ``cluster`` section: checked at load, one line naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.agent.config import dump_agent_config, load_agent_config
from failover.exceptions import ConfigError
from failover.secretfiles import write_private
from infra.lab import agents
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths
from tests.failover.agent.served import agent_config


def _write(tmp_path: Path, cluster: dict[str, Any]) -> Path:
    config = agent_config(tmp_path / "home", 7070)
    data = yaml.safe_load(dump_agent_config(config))
    data["cluster"] = cluster
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_cluster_section_reads_back_with_its_defaults(tmp_path: Path) -> None:
    write_private(tmp_path / "peers.secret", "x" * 32 + "\n")
    path = _write(tmp_path, {"endpoints": ["http://10.0.0.5:2379/"],
                             "peers": {"hetzner": "http://10.0.0.6:7070"},
                             "peer_secret_file": "peers.secret"})
    cluster = load_agent_config(path).cluster
    assert cluster is not None
    assert cluster.endpoints == ["http://10.0.0.5:2379"]
    assert (cluster.ttl, cluster.failsafe, cluster.name) == (10, True, "default")
    assert cluster.peer_secret_file == tmp_path / "peers.secret"


@pytest.mark.parametrize(("cluster", "said"), [
    ({"endpoints": ["10.0.0.5:2379"]}, "cluster.endpoints: '10.0.0.5:2379' must be "
     "http(s)://host:port"),
    ({"endpoints": ["http://e:2379"], "ttl": 3, "retry_timeout": 1},
     "cluster: ttl / 3 (1s) + 2 * retry_timeout (1s) + failsafe_timeout (1.5s) + 1s must be "
     "at most ttl (3s)"),
    ({"endpoints": ["http://e:2379"], "peers": {"hetzner": "http://h:7070"}},
     "cluster: failsafe with peers needs peer_secret_file"),
    ({"endpoints": ["http://e:2379"], "peers": {"aws": "http://a:7070"},
      "peer_secret_file": "s"}, "(top level): cluster.peers names this agent's own site (aws)"),
    ({"endpoints": ["http://e:2379"], "peers": {"Bad Site": "http://a:7070"}},
     "cluster.peers: 'Bad Site': a site's name is lower-case"),
])
def test_a_bad_cluster_section_is_one_line(tmp_path: Path, cluster: dict[str, Any],
                                           said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_agent_config(_write(tmp_path, cluster))
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_failsafe_off_shortens_what_the_timing_must_fit(tmp_path: Path) -> None:
    path = _write(tmp_path, {"endpoints": ["http://e:2379"], "ttl": 3, "retry_timeout": 0.4,
                             "failsafe": False})
    cluster = load_agent_config(path).cluster
    assert cluster is not None and not cluster.failsafe


def test_the_labs_agents_name_its_etcd_and_each_other(tmp_path: Path) -> None:
    layout, paths = LabLayout(subnet="127.90", agent_leases=True), LabPaths(tmp_path)
    paths.secrets.mkdir(mode=0o700)
    spec = agents.cluster_spec(layout, paths, "aws")
    assert spec.peers == {"hetzner": agents.agent_url(layout, "hetzner")}
    assert spec.endpoints == [layout.etcd_endpoint(site) for site in layout.sites]
    assert spec.peer_secret_file == agents.peer_secret_file(paths)
    secret = spec.peer_secret_file.read_text()
    assert agents.cluster_spec(layout, paths, "hetzner").peers == {
        "aws": agents.agent_url(layout, "aws")}
    assert spec.peer_secret_file.read_text() == secret  # one secret, shared
