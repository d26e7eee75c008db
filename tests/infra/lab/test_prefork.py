"""Forking the lab's servers from one parent: each a process of its own, as ``python -m`` runs it.

The servers here are tiny modules written by the test (no server of the
lab's starts): they write what they were given to a file and wait to be
stopped, as a server would.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from failover.processes import is_alive, stop
from failover.waiting import wait_for
from infra.lab.prefork import ForkFailed, Part, start

CHILD = '''
import json, os, signal, sys
from pathlib import Path

PRELOADED = []


def preload(args):
    PRELOADED.append(os.getpid())  # in the parent, before it forks


def main(argv):
    print("serving", flush=True)
    Path(argv[0]).write_text(json.dumps({"args": argv, "pid": os.getpid(),
                                         "preloaded_by": PRELOADED, "sid": os.getsid(0),
                                         "argv": sys.argv[1:],
                                         "extra": getattr(sys.modules.get("extra_module"),
                                                          "LOADED_IN", None)}))
    signal.pause()
'''


def parts(tmp_path: Path, *names: str, module: str = "child_server") -> list[Part]:
    return [Part(name, module, (str(tmp_path / f"{name}.json"), "--flag"),
                 str(tmp_path / f"{name}.log")) for name in names]


def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "child_server.py").write_text(CHILD)
    (tmp_path / "broken_server.py").write_text("raise RuntimeError('no such thing here')\n")
    (tmp_path / "extra_module.py").write_text("import os\nLOADED_IN = os.getpid()\n")
    root = Path(__file__).resolve().parents[3]
    return {**os.environ, "PYTHONPATH": f"{tmp_path}:{root}"}


def test_each_part_is_a_process_of_its_own_run_as_python_m_would(tmp_path: Path) -> None:
    records = start(parts(tmp_path, "one@a", "two@b"), env=env(tmp_path),
                    preload=["extra_module"])
    try:
        for record in records:
            said = tmp_path / f"{record.name}.json"
            wait_for(said.exists, timeout=10, what=f"{record.name} to serve", retry_on=())
            seen = json.loads(said.read_text())
            assert seen["pid"] == record.pid and is_alive(record)
            assert seen["args"] == seen["argv"] == [str(said), "--flag"]
            assert seen["sid"] == record.pid  # a session of its own, as spawn gives
            assert seen["preloaded_by"] and seen["preloaded_by"][0] != record.pid
            assert seen["extra"] == seen["preloaded_by"][0]  # imported by the parent too
            assert "serving" in Path(record.log).read_text()  # its output in its own log
            assert record.argv[-3:] == ("child_server", str(said), "--flag")
        assert records[0].pid != records[1].pid
        assert [r.name for r in records] == ["one@a", "two@b"]
    finally:
        outcomes = [stop(r) for r in records]
    assert outcomes == ["stopped", "stopped"]
    assert not any(is_alive(r) for r in records)


def test_one_part_stopped_leaves_the_others_running(tmp_path: Path) -> None:
    records = start(parts(tmp_path, "one@a", "two@b"), env=env(tmp_path))
    try:
        for record in records:
            wait_for((tmp_path / f"{record.name}.json").exists, timeout=10,
                     what=f"{record.name} to serve", retry_on=())
        os.kill(records[0].pid, signal.SIGKILL)
        wait_for(lambda: not is_alive(records[0]), timeout=10, what="one@a to die", retry_on=())
        assert is_alive(records[1])
    finally:
        for record in records:
            stop(record)


def test_a_module_that_fails_to_import_is_one_error_and_nothing_runs(tmp_path: Path) -> None:
    with pytest.raises(ForkFailed, match="no such thing here") as failed:
        start([*parts(tmp_path, "one@a"), *parts(tmp_path, "bad@b", module="broken_server")],
              env=env(tmp_path))
    assert failed.value.records == []  # every import comes before the first fork
    assert not (tmp_path / "one@a.json").exists()
