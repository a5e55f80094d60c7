"""The gateway's view of a partitioned index (issue 16): scatter-gather over N partitions, one version per answer.

`--index-url URL0,URL1,...` names one URL per partition (each a Service over that partition's replicas). Every
call of one answer is pinned to one version (`?version=`), the served one: the newest version that every
partition reports (`versions` in its /readyz), so an answer never mixes two builds. A partition that fails or
misses the stage budget is left out: the answer is still 200, marked `"partial": true` with the missing
partitions named. A partition that no longer holds the pinned version (409) makes the gateway look again at
once and repeat the answer on the version every partition now holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from imgcore.errors import ImgSearchError
from imgcore.index_wire import CategorySpec, partition_of
from services.common.errors import BackendUnavailable
from services.common.metrics import PARTIAL_ANSWERS
from services.gateway.backends import BackendRejected, Backends
from services.gateway.served_index import ServedIndex, item_path, itself, least_changes, similar_options

log = logging.getLogger("imgsearch.gateway")


def choose_version(current: str | None, states: Sequence[tuple[bool, dict[str, Any]]]) -> str | None:
    """The version to serve: the one every partition holds, switching only when all of them report the new one.

    While a partition is unreachable the served version stays if the others still hold it; a partition that
    holds none of the others' versions leaves the choice to the newest version the reachable ones share.
    """
    held = [set(body.get("versions") or []) for ok, body in states if ok]
    if not held:
        return current
    common = set.intersection(*held)
    primaries = {str((body.get("index") or {}).get("version")) for ok, body in states if ok}
    everyone = len(held) == len(states)
    if everyone and len(primaries) == 1 and primaries <= common:
        return primaries.pop()  # all partitions serve the same newest version: switch (or stay) to it
    if current in common:
        return current
    return max(common) if common else current


class PartitionedIndex(ServedIndex):
    """N partitions queried in parallel and merged by score."""

    def __init__(self, backends: Backends, on_swap: Callable[[], None]) -> None:
        super().__init__(backends, on_swap)
        self.names = sorted((n for n in backends.urls if n.startswith("index-")), key=lambda n: int(n[6:]))
        self.states: list[tuple[bool, dict[str, Any]]] = [(False, {}) for _ in self.names]

    async def refresh(self) -> None:
        self.states = list(await asyncio.gather(*(self.backends.readiness(n) for n in self.names)))
        for ok, body in self.states:
            index = body.get("index") or {}
            if ok and index.get("embedder"):
                self.embedder_sha256 = index["embedder"].get("sha256")
            if ok:  # every part's manifest carries the catalog's kinds (issue 15)
                self.kinds = index.get("kinds") or None
        known = [frozenset((body.get("index") or {}).get("categories") or {}) for ok, body in self.states if ok]
        if known:
            self.categories = frozenset().union(*known)
        self.set_version(choose_version(self.version, self.states), least_changes(self.states))

    def note(self, details: dict[str, Any]) -> None:
        """Nothing to learn from one answer's body: the partitions' /readyz decide the version."""

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when some partition answers for the served version; each partition's state is listed."""
        await self.refresh()
        parts = [
            {"ready": ok, "versions": body.get("versions", []), **({} if ok else {"error": body.get("error")})}
            for ok, body in self.states
        ]
        ready = self.version is not None and any(self.version in p["versions"] for p in parts)
        index: dict[str, Any] = {"version": self.version, "categories": sorted(self.categories or ())}
        index["embedder"] = {"sha256": self.embedder_sha256}
        return ready, {"ready": ready, "index": index, "partitions": parts}

    async def _answer(
        self, vectors: np.ndarray, k: int, categories: Sequence[CategorySpec], options: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Top-k per row over all partitions, one version; `partial` names the partitions left out. A product's
        images share a partition, so the merged top k are k distinct products (near-duplicates in any
        partitions are collapsed by `query`, after the merge)."""
        if self.version is None:
            await self.refresh()
        version = self.version
        answers = await self._scatter(vectors, k, categories, version, options)
        if any(_gone(a) for a in answers):  # a partition moved on: look again, answer on what all hold now
            await self.refresh()
            if self.version != version:
                version = self.version
                answers = await self._scatter(vectors, k, categories, version, options)
        return self._merge(answers, k, len(vectors), version)

    async def _scatter(
        self,
        vectors: np.ndarray,
        k: int,
        categories: Sequence[CategorySpec],
        version: str | None,
        options: dict[str, Any] | None,
    ) -> list[dict[str, Any] | BaseException]:
        calls = (
            self.backends.query(vectors, k, categories, backend=n, version=version, options=options) for n in self.names
        )
        return list(await asyncio.gather(*calls, return_exceptions=True))

    def _merge(
        self, answers: list[dict[str, Any] | BaseException], k: int, rows: int, version: str | None
    ) -> dict[str, Any]:
        missing = [i for i, a in enumerate(answers) if isinstance(a, BaseException) or a.get("version") != version]
        good = [a for a in answers if isinstance(a, dict) and a.get("version") == version]
        if not good:
            errors = [a for a in answers if isinstance(a, ImgSearchError) and not _gone(a)]
            raise errors[0] if errors else BackendUnavailable(f"no index partition answers for version {version}")
        results = []
        for row in range(rows):
            hits = [hit for a in good for hit in a["results"][row]]
            hits.sort(key=lambda h: (-float(h["score"]), str(h["item_id"])))
            results.append(hits[:k])
        # Partitions share one change log: the answer is as fresh as the least advanced of them (issue 17).
        changes = min(int(a.get("changes") or 0) for a in good)
        body: dict[str, Any] = {"version": version, "changes": changes, "results": results}
        if missing:
            for i in missing:
                # A candidate's partitions (shadow evaluation) carry its prefix: production's alert stays quiet.
                PARTIAL_ANSWERS.labels(partition=f"{self.backends.label_prefix}{i}").inc()
                log.warning("partition %d left out of an answer: %s", i, _why(answers[i]))
            body.update(partial=True, missing_partitions=missing)
        return body

    def owner(self, item_id: str) -> str:
        """The partition an item is first looked for in: its own id's (right for a row without a product id;
        a product's images live in the partition of the product, issue 28, found by asking the others)."""
        return self.names[partition_of(item_id, len(self.names))]

    async def similar(self, item_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """The item from its own partition, then its vector searched in every partition (itself, and with
        grouping its product, left out); the item and the results from one version (once more if a roll-out
        switched it in between)."""
        for attempt in (1, 2):
            version = await self._served()
            found = await self._owned(self.backends.get_json, item_id, "", version, attempt)
            if found is None:
                continue
            vector = np.asarray(found["vector"], dtype=np.float32)[None, :]
            k, options = int(params["k"]), similar_options(params)
            merged = await self.query(vector, k, [params.get("category")], options, itself(found["item"], options))
            if merged["version"] == version or attempt == 2:
                return {**merged, "item": found["item"], "results": merged.pop("results")[0]}
        raise AssertionError("unreachable")

    async def image(self, item_id: str) -> bytes:
        """The item's thumbnail from the partition that holds it."""
        for attempt in (1, 2):
            data = await self._owned(self.backends.get_bytes, item_id, "/image", await self._served(), attempt)
            if data is not None:
                return data
        raise AssertionError("unreachable")

    async def _served(self) -> str | None:
        if self.version is None:
            await self.refresh()
        return self.version

    async def _owned(self, get: Callable[..., Any], item_id: str, tail: str, version: str | None, attempt: int) -> Any:
        """GET `/v1/items/{id}{tail}` from the partition holding the item, pinned to `version`; None (after looking
        again at the partitions) when it no longer holds that version and this was the first attempt."""
        path = f"/v1/items/{item_path(item_id)}{tail}" + (f"?version={version}" if version else "")
        first = self.owner(item_id)
        try:
            try:
                return await get(first, path)
            except BackendRejected as exc:
                if exc.status != 404 or len(self.names) == 1:
                    raise
                return await self._elsewhere(get, path, first, exc)
        except BackendRejected as exc:
            if not _gone(exc) or attempt > 1:
                raise
            await self.refresh()
            return None

    async def _elsewhere(self, get: Callable[..., Any], path: str, tried: str, missing: BackendRejected) -> Any:
        """The other partitions asked at once; the one that holds the item answers (a product's partition)."""
        others = [n for n in self.names if n != tried]
        answers = await asyncio.gather(*(get(n, path) for n in others), return_exceptions=True)
        for answer in answers:
            if not isinstance(answer, BaseException):
                return answer
        errors = [a for a in answers if isinstance(a, BackendRejected) and a.status != 404]
        raise errors[0] if errors else missing


def _gone(answer: dict[str, Any] | BaseException) -> bool:
    return isinstance(answer, BackendRejected) and answer.status == 409


def _why(answer: dict[str, Any] | BaseException) -> str:
    return f"{type(answer).__name__}: {answer}" if isinstance(answer, BaseException) else "another version"


def served_index(backends: Backends, on_swap: Callable[[], None]) -> ServedIndex:
    """The gateway's view of its index: partitioned when `--index-url` names several."""
    partitioned = any(name.startswith("index-") for name in backends.urls)
    return PartitionedIndex(backends, on_swap) if partitioned else ServedIndex(backends, on_swap)
