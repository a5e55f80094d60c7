"""An inbox of changes files: the catalog system drops JSON Lines files into a store prefix; one drain applies
each (oldest name first) and files it away, so the catalog system needs store access, not a shell.

`<inbox>/<name>.jsonl` -> applied: `<inbox>/applied/<name>.jsonl` plus `.result.json` (version, seq);
refused: `<inbox>/refused/<name>.jsonl` plus `.result.json` (the error and the rows). A file is moved only
after its batch is durable (or refused), so a drain killed midway applies it again next time; applying a
batch twice is harmless (an upsert or delete of the same item again). Store trouble stops the drain with the
file left in place.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ann_index.build.embedding import BatchEmbedder, RebuildOptions
from ann_index.changes.apply import ChangesRefused, apply_changes
from imgcore.storage import as_uri, open_store

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"


def drain_inbox(
    inbox_uri: str, index_uri: str, embedder: BatchEmbedder, opts: RebuildOptions | None = None
) -> list[dict[str, Any]]:
    """Apply every changes file directly in the inbox, in name order; what became of each."""
    opts = opts or RebuildOptions()
    outcomes: list[dict[str, Any]] = []
    with open_store(as_uri(inbox_uri), s3_endpoint_url=opts.s3_endpoint_url) as inbox:
        for name in [key for key in inbox.list() if "/" not in key and key.endswith(SUFFIX)]:
            data = inbox.get_bytes(name)
            try:
                result: dict[str, Any] = apply_changes(inbox.url_of(name), index_uri, embedder, opts).to_dict()
                folder = "applied"
            except ChangesRefused as exc:
                result, folder = {"error": exc.message, "rows": exc.problems}, "refused"
                log.error("changes file %s refused: %s", inbox.url_of(name), exc.message)
            inbox.put_bytes(f"{folder}/{name}", data)
            inbox.put_bytes(f"{folder}/{name}.result.json", json.dumps(result, indent=2).encode())
            inbox.delete(name)  # that key only: `batch.jsonl.retry.jsonl` is another file, not applied yet
            outcomes.append({"file": name, "outcome": folder, **result})
    return outcomes
