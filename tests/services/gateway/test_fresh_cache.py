"""The gateway's result cache and catalog changes (issue 17): an answer cached before a change is never served
after the index replicas applied it (the cache is keyed by index version and change sequence)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Stack, copy_index_store, running_stack
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.http import search
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

PHOTO = (DATA / "photos" / "person.jpg").read_bytes()
CHECK_S = 0.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    store = copy_index_store(tmp_path_factory.mktemp("cache") / "store")
    with running_stack(index_store=store, extra={"gateway": ["--index-check-seconds", str(CHECK_S)]}) as s:
        yield s


def _ids(answer: dict[str, object]) -> list[str]:
    items = answer["items"]
    assert isinstance(items, list)
    return [hit["item_id"] for item in items for hit in item["results"]]


def _applied_seq(stack: Stack) -> int:
    return int(httpx.get(stack.url("index") + "/readyz", trust_env=False).json()["index"]["changes"]["seq"])


def test_a_cached_answer_is_not_served_after_a_delete_is_applied(stack: Stack, tmp_path: Path) -> None:
    first = search(stack.gateway_url, PHOTO, k=5).json()
    assert search(stack.gateway_url, PHOTO, k=5).json()["cached"] is True
    victim = _ids(first)[0]
    changes = tmp_path / "changes.jsonl"
    changes.write_text(json.dumps({"op": "delete", "item_id": victim}) + "\n")
    cmd = imgsearch_cmd("items", "apply", "--changes", str(changes), "--index-uri", stack.index_store.as_uri())
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seq = json.loads(done.stdout)["seq"]
    wait_until(lambda: _applied_seq(stack) >= seq, 30, message="the index did not apply the change")
    # Until the gateway's next check (every CHECK_S) has seen the change, the old answer may still be served:
    # the first answer computed afresh is the one to look at (a fixed sleep raced the check on a busy machine).

    def fresh_answer() -> dict[str, object] | None:
        answer: dict[str, object] = search(stack.gateway_url, PHOTO, k=5).json()
        return None if answer["cached"] else answer

    after = wait_until(fresh_answer, 30, interval_s=CHECK_S / 2, message="the gateway kept its cached answer")
    assert victim not in _ids(after)
    again = search(stack.gateway_url, PHOTO, k=5).json()
    assert again["cached"] is True and victim not in _ids(again)
