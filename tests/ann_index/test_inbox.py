"""Draining a changes inbox: each file is applied once (oldest name first) and filed under applied/ or
refused/ with its outcome; nothing is left to apply twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.changes.inbox import drain_inbox
from ann_index.version.changes import list_changes
from ann_index.version.publish import read_current
from imgcore.storage import open_store
from tests.ann_index.fakes import FakeEmbedder

OPTS = RebuildOptions(progress=False, n_trees=8, gate_queries=100)


def test_drain_applies_good_files_in_order_and_files_refused_ones(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "shop", limit=120)
    lines = catalog.read_text().splitlines()
    catalog.write_text("\n".join(lines[:100]) + "\n")
    out = (tmp_path / "store").as_uri()
    rebuild(str(catalog), out, FakeEmbedder(), OPTS)
    inbox = tmp_path / "inbox"
    shutil.copytree(tmp_path / "shop" / "images", inbox / "images")
    upserts = [{"op": "upsert", **json.loads(line)} for line in lines[100:105]]
    (inbox / "2026-01-01T00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in upserts))
    (inbox / "2026-01-01T01.jsonl").write_text('{"op": "delete"}\n')
    (inbox / "2026-01-01T02.jsonl").write_text('{"op": "delete", "item_id": "fmnist-train-00001"}\n')
    outcomes = drain_inbox(inbox.as_uri(), out, FakeEmbedder(), OPTS)
    assert [(o["file"], o["outcome"]) for o in outcomes] == [
        ("2026-01-01T00.jsonl", "applied"),
        ("2026-01-01T01.jsonl", "refused"),
        ("2026-01-01T02.jsonl", "applied"),
    ]
    assert [o.get("seq") for o in outcomes] == [1, None, 2]
    assert sorted(p.name for p in inbox.glob("*.jsonl")) == []
    refused = json.loads((inbox / "refused" / "2026-01-01T01.jsonl.result.json").read_text())
    assert "line 1" in refused["error"] and refused["rows"][0]["line"] == 1
    assert (inbox / "applied" / "2026-01-01T00.jsonl").read_text().count("upsert") == 5
    store = open_store(out)
    assert len(list_changes(store, str(read_current(store)))) == 2
    assert drain_inbox(inbox.as_uri(), out, FakeEmbedder(), OPTS) == []  # nothing is applied twice
