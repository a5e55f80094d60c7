"""The whole stack as real processes on free ports, for integration tests and the web page test.

- `demo_data_dir()` builds a Fashion-MNIST demo index once per test process (or reuses one from
  `IMGSEARCH_TEST_CACHE`), `DEMO_ITEMS` items from the train split.
- `start_stack()` / `running_stack()` start detector, embedder, index and gateway (`imgsearch serve`),
  each with its own index download folder; `shared_stack()` is one stack for the whole session.
- `copy_index_store()`, `clone_version()` and `set_current()` make private index stores to break.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services import defaults
from services.cli.up import service_args
from services.demo_index import build_demo_index, has_index, index_root
from services.stack import SERVICE_ORDER, ServiceProcess, free_port, start_service, stop_all

DEMO_ITEMS = int(os.environ.get("IMGSEARCH_TEST_DEMO_ITEMS", "3000"))
ADMIN_TOKEN = "test-admin-token-1234"
_SHARED: dict[str, object] = {}


def _session_dir() -> Path:
    if "tmp" not in _SHARED:
        path = Path(tempfile.mkdtemp(prefix="imgsearch-tests-"))
        atexit.register(shutil.rmtree, path, True)
        _SHARED["tmp"] = path
    return Path(str(_SHARED["tmp"]))


def _embedder_sha12() -> str:
    from imgcore.card import load_card

    return str(load_card(Path(defaults.MODELS_DIR) / "fmnist-lite0")["sha256"])[:12]


def demo_data_dir() -> Path:
    """A data folder holding a catalog and a published demo index (built at most once per process)."""
    if "demo" in _SHARED:
        return Path(str(_SHARED["demo"]))
    cache = os.environ.get("IMGSEARCH_TEST_CACHE")
    root = Path(cache) if cache else _session_dir()
    data = root / f"demo-{DEMO_ITEMS}-{_embedder_sha12()}"
    if not has_index(data):
        shutil.rmtree(data, ignore_errors=True)
        build_demo_index(data, limit=DEMO_ITEMS, progress=False)
    _SHARED["demo"] = data
    return data


def copy_index_store(dest: Path) -> Path:
    """A private copy of the demo index store (CURRENT + versions/) to publish broken versions into."""
    shutil.copytree(index_root(demo_data_dir()), dest)
    return dest


def current_version(store: Path) -> str:
    return (store / "CURRENT").read_text().strip()


def set_current(store: Path, version: str) -> None:
    """Point CURRENT at `version`, atomically."""
    tmp = store / ".CURRENT.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, store / "CURRENT")


def clone_version(store: Path, new_version: str, mutate: Callable[[Path], None] | None = None) -> str:
    """Copy the current version under a new name (manifest rewritten), then let `mutate` damage it."""
    src = store / "versions" / current_version(store)
    dst = store / "versions" / new_version
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["version"] = new_version
    (dst / "manifest.json").write_text(json.dumps(manifest))
    if mutate is not None:
        mutate(dst)
    return new_version


@dataclass
class Stack:
    """Four running services; `url(name)` gives a service's base URL."""

    root: Path
    index_store: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    def url(self, name: str) -> str:
        return self.services[name].url

    def start(self, name: str, port: int | None = None) -> ServiceProcess:
        """Start (or start again, on its old port) one service; does not wait for readiness."""
        old = self.services.get(name)
        port = port or (old.port if old else free_port())
        svc = start_service(name, port, args=self.args[name], env=self.env, log_path=self.root / "logs" / f"{name}.log")
        self.services[name] = svc
        return svc

    def stop(self, name: str) -> None:
        self.services[name].stop()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        for name in SERVICE_ORDER:
            self.services[name].wait_ready(timeout_s)

    def close(self) -> None:
        stop_all(list(self.services.values()))


def start_stack(
    *, index_store: Path | None = None, extra: dict[str, list[str]] | None = None, admin_token: str = ADMIN_TOKEN
) -> Stack:
    """Start the four services (ready when this returns) on the demo index or on `index_store`."""
    data = demo_data_dir()
    root = Path(tempfile.mkdtemp(prefix="stack-", dir=_session_dir()))
    store = index_store or index_root(data)
    ports = {name: free_port() for name in SERVICE_ORDER}
    args = service_args(data, ports, "127.0.0.1")
    args["index"] = [*args["index"], "--index-uri", store.as_uri(), "--local-dir", str(root / "index-cache")]
    for name, more in (extra or {}).items():
        args[name] = [*args[name], *more]
    stack = Stack(root=root, index_store=store, args=args, env={"IMGSEARCH_ADMIN_TOKEN": admin_token})
    try:
        for name in SERVICE_ORDER:
            stack.start(name, ports[name])
        stack.wait_ready()
    except BaseException:
        stack.close()
        raise
    return stack


@contextmanager
def running_stack(**kwargs: object) -> Iterator[Stack]:
    """`start_stack(...)`, stopped on exit."""
    stack = start_stack(**kwargs)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.close()


def shared_stack() -> Stack:
    """One stack on the demo index for every test module that does not break it (stopped at exit)."""
    if "stack" not in _SHARED:
        stack = start_stack()
        atexit.register(stack.close)
        _SHARED["stack"] = stack
    shared = _SHARED["stack"]
    assert isinstance(shared, Stack)
    return shared
