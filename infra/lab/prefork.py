"""Start several of the lab's Python servers from one parent that imported them first.

Each of the lab's moto servers, TLS terminators and Hetzner fakes is a
process of its own, so that a drill can freeze or kill one site's parts by
PID. Started one by one, each imports its libraries itself: ten copies of
moto, botocore's service models, asyncio and the rest. Forked from one
parent that imported them first (as gunicorn's ``--preload`` does), they
share those pages until one of them writes to them, and the kernel counts
them once (PSS divides them among the sharers): the lab's memory falls by
some 150 MiB, and its servers stay separate processes, each recorded by its
own PID and start time, stopped and signalled alone.

``python -m infra.lab.prefork`` reads on stdin a JSON object: ``parts``, each
``{"name", "module", "args", "log"}``, and ``preload``, modules the servers
import later (on a path only some of them take). It imports every part's
module (and calls its ``preload(args)`` when it has one, to import what the
server will need at its first request) and those, freezes the garbage collector's view of what
it has (so that no child's collection writes to the shared pages), then
forks each part: a new session, stdin from /dev/null, stdout and stderr
appended to its log, and ``module.main(args)`` run as ``python -m module
args`` would. It prints one line per part as it forks it (``name pid``,
so that the lab records every process even if this parent dies half way),
and exits; the servers live on, adopted by init like any process the lab
starts. ``start`` is the lab's side.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from failover.processes import ProcessRecord, start_ticks
from infra.lab.exceptions import LabError

LAUNCH_TIMEOUT = 60.0  # seconds to import every server and fork them all


class ForkFailed(LabError):
    """The parent that forks the servers failed; ``records`` are those it forked before."""

    def __init__(self, message: str, records: list[ProcessRecord]) -> None:
        super().__init__(message)
        self.records = records


@dataclass(frozen=True)
class Part:
    """One server to fork: what ``python -m module *args`` would run, and its log.

    ``run`` names the module whose ``main(args)`` that is, when ``module`` is a
    package whose ``__main__`` calls it (``failover.agent``: ``failover.agent.main``).
    """

    name: str
    module: str
    args: tuple[str, ...]
    log: str
    run: str = ""

    @property
    def main_module(self) -> str:
        """The module whose ``main(args)`` the forked child runs."""
        return self.run or self.module

    @property
    def argv(self) -> tuple[str, ...]:
        """The equivalent command line (what the lab records, and would spawn alone)."""
        return (sys.executable, "-m", self.module, *self.args)


def _run(part: Part, server: Any) -> int:
    """In the forked child: become the server, as ``python -m`` would start it."""
    os.setsid()  # the terminal's Ctrl-C and the parent's session are not the server's
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(part.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.argv = [sys.argv[0], *part.args]
    try:  # the frozen imports stay uncollected (and shared); the server's own garbage is not
        code = server.main(list(part.args))
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code if isinstance(code, int) else (0 if code is None else 1)


def launch(parts: Sequence[Part], preload: Sequence[str] = ()) -> None:
    """Import every part's server (and ``preload``), then fork each; prints ``name pid`` per
    part forked."""
    for module in preload:
        importlib.import_module(module)
    servers = {}
    for part in parts:
        servers[part.name] = importlib.import_module(part.main_module)
        warm = getattr(servers[part.name], "preload", None)
        if warm is not None:
            warm(list(part.args))
    if threading.active_count() != 1:  # a fork copies one thread: another's locks stay held
        raise RuntimeError(f"{threading.active_count()} threads run after the imports; "
                           "forking them is not safe")
    gc.collect()
    gc.freeze()
    for part in parts:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_run(part, servers[part.name]))
        print(part.name, pid, flush=True)


def start(parts: Sequence[Part], env: Mapping[str, str] | None = None,
          timeout: float = LAUNCH_TIMEOUT, preload: Sequence[str] = ()) -> list[ProcessRecord]:
    """Fork ``parts`` from one parent that imported them (and ``preload``) first; their
    records, in order.

    Raises ForkFailed naming the parent's error when it failed, with the parts
    it forked before that (the lab records them, so that it stops them).
    """
    launcher = subprocess.run(
        [sys.executable, "-m", "infra.lab.prefork"],
        input=json.dumps({"parts": [asdict(p) for p in parts], "preload": list(preload)}),
        capture_output=True, text=True,
        env=dict(env) if env is not None else None, timeout=timeout, check=False,
    )
    argv = {p.name: p for p in parts}
    records = []
    for line in launcher.stdout.splitlines():
        name, pid = line.split()
        part = argv[name]
        ticks = start_ticks(int(pid)) or 0  # 0: it died at once; its log says why
        records.append(ProcessRecord(name, int(pid), ticks, part.argv, part.log))
    if launcher.returncode != 0 or len(records) != len(parts):
        said = launcher.stderr.strip().splitlines() or ["no output"]
        raise ForkFailed(f"forking the lab's servers failed: {said[-1]}", records)
    return records


def main() -> int:
    """The command line: parts (and modules to preload) as JSON on stdin."""
    try:
        request = json.load(sys.stdin)
        parts = [Part(p["name"], p["module"], tuple(p["args"]), str(Path(p["log"])),
                      p.get("run", "")) for p in request["parts"]]
        preload = [str(module) for module in request.get("preload", ())]
    except (ValueError, KeyError, TypeError) as exc:
        print(f"prefork: stdin is not a JSON object of parts: {exc}", file=sys.stderr)
        return 2
    launch(parts, preload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
