"""``watch.cluster``: optional, its endpoints checked, Patroni's timing rule named in one line."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover.cluster.config import ClusterConfig
from failover.cluster.etcd import EtcdCluster
from failover.cluster.exceptions import ClusterUnavailable
from failover.config import parse_config
from failover.exceptions import ConfigError
from infra.lab import etcd
from infra.lab.config import lab_config
from infra.lab.layout import LabLayout
from infra.lab.paths import LabPaths


def _data(tmp_path: Path, **cluster: Any) -> dict[str, Any]:
    data = lab_config(LabLayout(subnet="127.86"), LabPaths(tmp_path))
    data["watch"]["cluster"] = {**data["watch"]["cluster"], **cluster}
    return data


def test_the_lab_names_its_three_members_and_times_that_pass_the_rules(tmp_path: Path) -> None:
    cluster = parse_config(_data(tmp_path), "cfg", tmp_path).watch.cluster
    assert cluster is not None
    assert cluster.endpoints == ["http://127.86.10.1:2379", "http://127.86.20.1:2379",
                                 "http://127.86.30.1:2379"]
    assert (cluster.name, cluster.ttl, cluster.loop_wait, cluster.retry_timeout) == (
        etcd.CLUSTER_NAME, etcd.TTL, etcd.LOOP_WAIT, etcd.RETRY_TIMEOUT)


def test_without_the_section_the_controller_runs_alone(tmp_path: Path) -> None:
    data = _data(tmp_path)
    del data["watch"]["cluster"]
    assert parse_config(data, "cfg", tmp_path).watch.cluster is None


def test_the_defaults_are_patronis(tmp_path: Path) -> None:
    config = ClusterConfig(endpoints=["http://10.0.0.5:2379"])
    assert (config.ttl, config.loop_wait, config.retry_timeout, config.name) == (
        30, 10, 10, "default")


def test_timing_that_breaks_patronis_rule_is_one_line_naming_the_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_data(tmp_path, ttl=25, loop_wait=10, retry_timeout=10), "cfg", tmp_path)
    assert str(info.value) == (
        "cfg has 1 problem:\n  - watch.cluster: loop_wait (10s) + 2 * retry_timeout (10s) "
        "must be at most ttl (25s): a leader that cannot reach etcd must have stepped down "
        "before its key expires and another controller takes over")


def test_a_loop_too_long_for_the_ttl_is_refused_beside_the_other_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_data(tmp_path, ttl=12, loop_wait=6, retry_timeout=4), "cfg", tmp_path)
    message = str(info.value)
    assert "has 2 problems" in message
    assert "watch.cluster: loop_wait (6s) + 2 * retry_timeout (4s) must be at most ttl (12s)" \
        in message
    assert "watch.cluster: ttl (12s) must be more than 2 * loop_wait (6s) + 1s" in message


def test_bad_endpoints_and_fields_are_named_at_once(tmp_path: Path) -> None:
    data = _data(tmp_path, endpoints=["ftp://10.0.0.5:2379", "http://10.0.0.6:port",
                                      "http://10.0.0.7:2379/v3"], ttl=1, name="a b")
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg", tmp_path)
    message = str(info.value)
    for problem in ("watch.cluster.endpoints: 'ftp://10.0.0.5:2379' must be http(s)://host:port",
                    "'http://10.0.0.6:port' has a port that is no number",
                    "'http://10.0.0.7:2379/v3' must be http(s)://host:port",
                    "watch.cluster.ttl: Input should be greater than or equal to 2",
                    "watch.cluster.name: String should match pattern"):
        assert problem in message, (problem, message)
    data = _data(tmp_path, endpoints=[])
    with pytest.raises(ConfigError, match=r"watch\.cluster\.endpoints: List should have at le"):
        parse_config(data, "cfg", tmp_path)


# -- the wrapper, where no member answers (no server needed) ---------------------------


@pytest.fixture
def silent() -> Iterator[str]:
    """An endpoint that takes connections and never answers (a frozen member)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _refusing() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: refused


def test_when_no_endpoint_answers_one_line_names_each_and_what_to_do(silent: str) -> None:
    refusing = _refusing()
    cluster = EtcdCluster([refusing, silent], "unit", retry_timeout=0.4)
    with pytest.raises(ClusterUnavailable) as info:
        cluster.get("leader")
    assert str(info.value) == (
        f"etcd did not answer get leader in 0.4s: tried {refusing} (connection refused), "
        f"{silent} (no answer in 0.2s); check that most of its members run and that "
        "watch.cluster.endpoints names them")
    with pytest.raises(ClusterUnavailable, match=r"^etcd did not answer grant a 5s lease in "):
        cluster.grant(5)


def test_a_call_goes_round_the_endpoints_while_time_is_left() -> None:
    # A clock that moves only by the pauses between rounds: refusals take no time.
    now = [0.0]
    cluster = EtcdCluster([_refusing(), _refusing()], "unit", retry_timeout=1.0,
                          clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    asked: list[tuple[int, float]] = []
    for i, client in enumerate(cluster._clients):
        def post(*args: Any, _i: int = i, _post: Any = client.post, **kwargs: Any) -> Any:
            asked.append((_i, round(now[0], 6)))
            return _post(*args, **kwargs)

        client.post = post  # type: ignore[method-assign]
    with pytest.raises(ClusterUnavailable, match=r" in 1s: tried "):
        cluster.revision()
    # Both endpoints a round, a pause between rounds, and no request begun that could
    # not have its whole share (half a second) before the second is up.
    assert asked == [(i, round(0.1 * r, 6)) for r in range(6) for i in (0, 1)]
