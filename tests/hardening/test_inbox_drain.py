"""`imgsearch items drain` (the real CLI and embedder) on an inbox an attacker or a broken exporter writes to
(issue 33, finding 6): a file with a lone-surrogate id or nesting past the JSON parser's depth is refused
and the files after it are applied; draining `batch.jsonl` leaves `batch.jsonl.retry.jsonl` to be applied in
its turn; rows naming an image past the decode limit are refused without reading it whole (before: 24 rows
naming a 52 MB image took the job to 1.17 GB, over its 1 GiB limit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import copy_index_store
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.paths import DATA

pytestmark = pytest.mark.stack

# What the drain may reach with 24 rows naming a 52 MB image: the embedder and runtime (~150 MiB here)
# plus a few images in flight; reading each whole and keeping it until refused took 1.17 GB.
PEAK_LIMIT_MIB = 500


def _drain(store: Path, inbox: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the drain in a child; its output and the peak RSS (MiB) of the drain process."""
    cmd = imgsearch_cmd("items", "drain", "--inbox", inbox.as_uri(), "--index-uri", store.as_uri())
    probe = (
        "import resource, subprocess, sys; "
        f"done = subprocess.run({cmd!r}, capture_output=True, text=True); "
        "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr); "
        "sys.exit(done.returncode)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    return done, float(done.stderr.strip().splitlines()[-1])


def test_one_poisoned_file_refuses_itself_only_and_a_longer_name_is_not_deleted(tmp_path: Path) -> None:
    store = copy_index_store(tmp_path / "store")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "dog.jpg").write_bytes((DATA / "photos" / "dog.jpg").read_bytes())
    (inbox / "a-surrogate.jsonl").write_text('{"op": "delete", "item_id": "x\\ud800"}\n')
    (inbox / "b-deep.jsonl").write_text('{"op": "upsert", "item_id": "d", "attrs": ' + "[" * 5000 + "]" * 5000 + "}\n")
    good = {"op": "upsert", "item_id": "fresh-dog", "image": "dog.jpg", "category": "Bag", "title": "A dog bag"}
    (inbox / "c-batch.jsonl").write_text(json.dumps(good) + "\n")
    (inbox / "c-batch.jsonl.retry.jsonl").write_text(json.dumps({"op": "delete", "item_id": "fresh-dog"}) + "\n")
    done, _ = _drain(store, inbox)
    assert done.returncode == 3, done.stderr[-3000:]
    outcome = dict(line.split(": ", 1) for line in done.stdout.splitlines() if not line.startswith("drained "))
    assert outcome["a-surrogate.jsonl"].startswith("REFUSED") and outcome["b-deep.jsonl"].startswith("REFUSED")
    assert outcome["c-batch.jsonl"].startswith("change ") and outcome["c-batch.jsonl.retry.jsonl"].startswith("change ")
    assert sorted(p.name for p in (inbox / "applied").glob("*.jsonl")) == ["c-batch.jsonl", "c-batch.jsonl.retry.jsonl"]
    assert sorted(p.name for p in (inbox / "refused").glob("*.jsonl")) == ["a-surrogate.jsonl", "b-deep.jsonl"]


def test_rows_naming_an_oversized_image_are_refused_without_holding_it(tmp_path: Path) -> None:
    store = copy_index_store(tmp_path / "store")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "huge.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(52_000_000))
    rows = [
        {"op": "upsert", "item_id": f"huge-{i}", "image": "huge.jpg", "category": "Bag", "title": "x"}
        for i in range(24)
    ]
    (inbox / "batch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done, peak_mib = _drain(store, inbox)
    assert done.returncode == 3 and "REFUSED" in done.stdout, done.stderr[-3000:]
    assert peak_mib < PEAK_LIMIT_MIB, f"drain peaked at {peak_mib:.0f} MiB"
