"""boto3 sessions for long-lived processes: botocore's data read once, and only what is used.

A boto3 session of its own reads botocore's endpoints (some 7 MiB once
parsed) and the whole model of every service it makes a client of (EC2's:
some 20 MiB, for 700 operations), and keeps them for the process's life.
The controller makes clients of Route 53, EC2 and S3, and new ones when a
key is rotated; an agent makes one per object store. Sessions made here
share botocore's loader, so that a process holds one copy of each file.

A session asked for some ``operations`` only (the controller's EC2 check
calls ``DescribeInstances`` and nothing else) gets clients that know just
those: of the service's model, the operations and the shapes they use, a
few hundred KiB. The whole model is read and cut in a short-lived child
process (``python -m failover.awssession``): read here, its 20 MiB would be
freed, but among the allocations of the process's other threads, which keep
most of that memory from ever being reused. Should the child fail, the model
is cut here. A cut client's other methods do not exist (AttributeError), so
that a use nobody planned for fails at once rather than quietly costing the
memory again.

boto3 is imported here when a session is first needed, not by every module
that might one day make one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3

CUT_TIMEOUT = 60.0  # seconds for the child to read and cut a model
_LOCK = threading.Lock()  # a session's setup is not safe to share between threads
_shared: Any = None  # botocore's loader, shared by every session made here
_some: dict[frozenset[str], _SomeOperations] = {}  # by the operations kept


def only_operations(model: dict[str, Any], operations: Collection[str]) -> str:
    """A service model (botocore's ``service-2``) with only ``operations`` and the shapes they
    use, as JSON text."""
    kept = {name: op for name, op in model["operations"].items() if name in operations}
    shapes: dict[str, Any] = model["shapes"]
    todo = [ref["shape"] for op in kept.values()
            for ref in (op.get("input"), op.get("output"), *op.get("errors", ())) if ref]
    used: set[str] = set()
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        shape = shapes[name]
        refs = (*shape.get("members", {}).values(), shape.get("member"), shape.get("key"),
                shape.get("value"))
        todo += [ref["shape"] for ref in refs if ref]
    return json.dumps({**model, "operations": kept,
                       "shapes": {name: shapes[name] for name in sorted(used)}})


def cut_elsewhere(search_paths: Sequence[str], service_name: str, api_version: str | None,
                  operations: Collection[str]) -> str | None:
    """The cut model as a child process reads it from ``search_paths``; None if it failed."""
    request = {"paths": list(search_paths), "service": service_name,
               "api_version": api_version, "operations": sorted(operations)}
    try:
        child = subprocess.run([sys.executable, "-m", "failover.awssession"],
                               input=json.dumps(request), capture_output=True, text=True,
                               timeout=CUT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return child.stdout if child.returncode == 0 and child.stdout else None


class _SomeOperations:
    """The shared loader, but the service models it gives hold only ``operations``."""

    def __init__(self, loader: Any, operations: frozenset[str]) -> None:
        self._loader = loader
        self._operations = operations
        self._models: dict[tuple[str, str | None], dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)  # endpoints, paginators...: the shared copies

    def load_service_model(self, service_name: str, type_name: str,
                           api_version: str | None = None) -> Any:
        """botocore's ``load_service_model``; a ``service-2`` model cut to the operations."""
        if type_name != "service-2":
            return self._loader.load_service_model(service_name, type_name,
                                                   api_version=api_version)
        key = (service_name, api_version)
        if key not in self._models:
            text = cut_elsewhere(self._loader.search_paths, service_name, api_version,
                                 self._operations) or self._cut_here(service_name, api_version)
            self._models[key] = json.loads(text)
        return self._models[key]

    def _cut_here(self, service_name: str, api_version: str | None) -> str:
        """The cut model read in this process, the whole one dropped from the shared cache
        (unless someone had it before)."""
        cache = self._loader._cache
        known = set(cache)
        model = self._loader.load_service_model(service_name, "service-2",
                                                api_version=api_version)
        for new in set(cache) - known:
            if cache[new] is model or (isinstance(cache[new], tuple)
                                       and any(v is model for v in cache[new])):
                del cache[new]
        return only_operations(model, self._operations)


def session(operations: Collection[str] = (), **kwargs: Any) -> boto3.session.Session:
    """A boto3 session (``kwargs`` as boto3's) sharing botocore's data with the process's others.

    With ``operations``, its clients know only those (``DescribeInstances``).
    """
    import boto3
    import botocore.session

    global _shared
    with _LOCK:
        core = botocore.session.get_session()
        if _shared is None:  # the first session's own: botocore's path, $AWS_DATA_PATH too
            _shared = core.get_component("data_loader")
        loader: Any = _shared
        if operations:
            loader = _some.setdefault(frozenset(operations),
                                      _SomeOperations(_shared, frozenset(operations)))
        core.register_component("data_loader", loader)
        made = boto3.session.Session(botocore_session=core, **kwargs)
        # Each boto3 session adds its data folder to the loader's path: once is enough.
        _shared.search_paths[:] = list(dict.fromkeys(_shared.search_paths))
    return made


def main() -> int:
    """The child: a JSON request on stdin (``cut_elsewhere``), the cut model on stdout."""
    from botocore.loaders import Loader

    request = json.load(sys.stdin)
    loader = Loader(extra_search_paths=request["paths"], include_default_search_paths=False)
    model = loader.load_service_model(request["service"], "service-2",
                                      api_version=request["api_version"])
    sys.stdout.write(only_operations(model, request["operations"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
