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
from pathlib import Path

from ann_index.catalog.demo import DEMO_FORMAT
from ann_index.version.manifest import LAYOUT
from services.demo_index import build_demo_index, has_index, index_root
from services.stack import LocalStack, embedder_sha256

DEMO_ITEMS = int(os.environ.get("IMGSEARCH_TEST_DEMO_ITEMS", "3000"))
ADMIN_TOKEN = "test-admin-token-0123456789"
_SHARED: dict[str, object] = {}


def _session_dir() -> Path:
    if "tmp" not in _SHARED:
        path = Path(tempfile.mkdtemp(prefix="imgsearch-tests-"))
        atexit.register(shutil.rmtree, path, True)
        _SHARED["tmp"] = path
    return Path(str(_SHARED["tmp"]))


def demo_data_dir() -> Path:
    """A data folder holding a catalog and a published demo index (built at most once per process)."""
    if "demo" in _SHARED:
        return Path(str(_SHARED["demo"]))
    cache = os.environ.get("IMGSEARCH_TEST_CACHE")
    root = Path(cache) if cache else _session_dir()
    # The layout is part of the key: a cached index of an older layout is rebuilt, not reused or destroyed.
    # "-kinds": indexes built before the catalog's kinds.json (#15) stay for the branches that use them;
    # "-pngthumbs": before, the catalog's PNGs were re-encoded as JPEG thumbnails (ann_index.build.thumb_reuse);
    # "-fg": before, catalog images were embedded whole, unlike a searched photo (#27); DEMO_FORMAT: the rows.
    data = root / f"demo-{DEMO_ITEMS}-{str(embedder_sha256())[:12]}-l{LAYOUT}-kinds-pngthumbs-fg-{DEMO_FORMAT}"
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


class Stack(LocalStack):
    """The local stack of `imgsearch up` on the demo index or on a private `index_store`."""

    index_store: Path


def start_stack(
    *,
    index_store: Path | None = None,
    extra: dict[str, list[str]] | None = None,
    admin_token: str = ADMIN_TOKEN,
    env: dict[str, str] | None = None,
) -> Stack:
    """Start the four services (ready when this returns) on the demo index or on `index_store`, with `env`
    added to every service's environment."""
    data = demo_data_dir()
    root = Path(tempfile.mkdtemp(prefix="stack-", dir=_session_dir()))
    store = index_store or index_root(data)
    private = {"index": ["--index-uri", store.as_uri(), "--local-dir", str(root / "index-cache")]}
    stack = Stack(data, root, private, extra or {}, env={"IMGSEARCH_ADMIN_TOKEN": admin_token, **(env or {})})
    stack.index_store = store
    stack.up()
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
        # Tests on the shared stack assert what detection finds: on a busy machine a 2 s detector budget ran out
        # (2.01 s for two people in park.jpg at load 8) and the whole photo was searched. The budget's own
        # behaviour is tested on private stacks (tests/services/gateway/test_faults.py).
        stack = start_stack(env={"IMGSEARCH_GATEWAY_DETECT_TIMEOUT_S": "15"})
        atexit.register(stack.close)
        _SHARED["stack"] = stack
    shared = _SHARED["stack"]
    assert isinstance(shared, Stack)
    return shared
