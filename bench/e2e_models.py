"""bench/e2e.py --models fp32,int8: the same photos through one stack per model set, side by side.

Every set gets its own stack (its detector and embedder from models/, and an index built with its own
embedder: an index is bound to the embedder that made it). All stacks run at once and take turns, round
by round, at each concurrency level, so drift on a shared machine hits them alike. Reported per set:
throughput and p50 at each level, and throughput relative to the first set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from common import REPO, demo_data, pct, start_stack, table

MODELS = REPO / "models"
# Detector and embedder folder of each model set.
SETS: dict[str, tuple[str, str]] = {
    "fp32": ("nanodet-m", "fmnist-lite0"),
    "int8": ("nanodet-m-int8", "fmnist-lite0-int8"),
    "int8-embedder": ("nanodet-m", "fmnist-lite0-int8"),
    # Issue 31: the detectors alone, each with the default embedder.
    "nanodet-fp32": ("nanodet-m", "fmnist-lite0-int8"),
    "default": ("nanodet-m-int8", "fmnist-lite0-int8"),
}


def parse_sets(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f"--models: unknown set(s) {unknown}; known: {', '.join(SETS)}")
    return names


def _flags(name: str) -> dict[str, list[str]]:
    from imgcore.card import load_card

    detector, embedder = (MODELS / n for n in SETS[name])
    return {
        "detector": ["--model-uri", detector.as_uri()],
        "embedder": ["--model-uri", embedder.as_uri()],
        "index": ["--embedder-sha256", str(load_card(embedder)["sha256"])],
    }


def compare(
    names: Sequence[str],
    items: int,
    bodies: list[tuple[str, bytes]],
    levels: Sequence[int],
    rounds: int,
    extra: dict[str, list[str]],
    run_clients: Callable[..., Any],
) -> dict[str, Any]:
    """Throughput and p50 per model set and concurrency level; the JSON part of e2e's last line."""
    stacks = {}
    try:
        for name in names:
            data = demo_data(items, MODELS / SETS[name][1])
            flags = {svc: [*extra.get(svc, []), *_flags(name).get(svc, [])] for svc in {*extra, *_flags(name)}}
            stacks[name] = start_stack(data, extra=flags)
        runs: dict[tuple[str, int], list[Any]] = {}
        for c in levels:
            for r in range(rounds):
                order = [int(i) for i in np.random.default_rng(200 + r).permutation(len(bodies))]
                for name in names if r % 2 == 0 else list(reversed(names)):
                    url = stacks[name].gateway_url
                    runs.setdefault((name, c), []).append(run_clients(url, bodies, c, order, warmup=c))
    finally:
        for stack in stacks.values():
            stack.close()
    return _report(names, levels, runs)


def _report(names: Sequence[str], levels: Sequence[int], runs: dict[tuple[str, int], list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"sets": {n: dict(zip(("detector", "embedder"), SETS[n], strict=True)) for n in names}}
    rows = []
    for c in levels:
        base = None
        for name in names:
            got = runs[(name, c)]
            rps = sum(len(g.latency_ms) for g in got) / sum(g.wall_s for g in got)
            p50 = pct([ms for g in got for ms in g.latency_ms])["p50"]
            errors = sum(g.errors for g in got)
            base = base or rps
            out.setdefault("rps", {}).setdefault(str(c), {})[name] = round(rps, 2)
            out.setdefault("p50_ms", {}).setdefault(str(c), {})[name] = round(p50, 1)
            out.setdefault("rps_vs_first", {}).setdefault(str(c), {})[name] = round(rps / base, 3)
            out["errors"] = out.get("errors", 0) + errors
            rows.append([name, c, rps, rps / base, p50, errors])
    print("\nmodel sets side by side (same photos, interleaved rounds)")
    print(table(["models", "clients", "req/s", "÷ first", "p50 ms", "errors"], rows))
    return out
