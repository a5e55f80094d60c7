"""The gateway's HTTP client to its backends: aiohttp's (the gateway's, `services/gateway/transport.py`) vs
the hand-written `http1` client it replaced (read from git history), side by side in one run.

    python bench/http_client.py [--items 5000] [--rounds 12] [--calls 100] [--fmnist 33]

Starts detector, embedder and index, and two gateways on those three backends (both `--cache-size 0`), one
per client, and measures in interleaved rounds (the order of the two flips every round):
  a. CPU per backend call: this process drives the gateway's own `Backends` (a raw-RGB `embed` of a 224 px
     photo, then a JSON `query` of its vector), one call at a time, once per client; process CPU / calls;
  b. P2 as `bench/e2e.py` measures it: throughput with 8 concurrent clients through each gateway (two passes
     each, A B B A) ÷ the in-process one-thread throughput of the same round; and the CPU per search of each
     gateway and of the whole stack (the three backends, the gateway, this process as the client).
Last line, one JSON object: `{"cpu_per_call_ms": {...}, "p2": {...}, "p2_cost": 1 - aiohttp / http1, ...}`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, REPO, demo_data, emit, index_version_dir, machine, median, query_photos, start_stack, table  # noqa: E402
from e2e import InProcess, cpu_seconds, multipart, run_clients, shuffled  # noqa: E402

from services.stack import ServiceProcess, _die_with_parent, free_port  # noqa: E402

CLIENTS = ("http1", "aiohttp")
Bodies = list[tuple[str, bytes]]
P2_CLIENTS = 8


def _http1_module() -> Any:
    """`services/gateway/http1.py`: from the tree, or from the last commit that had it (it was replaced)."""
    path = "services/gateway/http1.py"
    if (REPO / path).is_file():
        source = (REPO / path).read_text()
    else:
        git = ["git", "-C", str(REPO)]
        removed = subprocess.run([*git, "rev-list", "-1", "HEAD", "--", path], capture_output=True, text=True)
        rev = removed.stdout.strip()
        source = subprocess.run([*git, "show", f"{rev}^:{path}"], capture_output=True, text=True, check=True).stdout
    module = sys.modules.setdefault("bench_http1", types.ModuleType("bench_http1"))
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the repository's own former module
    return module


def make_pool(kind: str, connect_timeout_s: float) -> Any:
    """A pool with the interface `Backends` uses (`request`, `close`)."""
    if kind == "aiohttp":
        from services.gateway.transport import HttpPool

        return HttpPool(connect_timeout_s=connect_timeout_s)
    return _http1_module().Http1Pool(connect_timeout_s=connect_timeout_s)


def serve_gateway(kind: str, argv: list[str]) -> int:
    """In a child process: `imgsearch serve gateway ARGV` whose `Backends` use the `kind` client."""
    import services.gateway.backends as backends
    from services.cli import main

    backends.HttpPool = lambda connect_timeout_s: make_pool(kind, connect_timeout_s)  # type: ignore[assignment]
    return main(["serve", "gateway", *argv])


def start_gateway(kind: str, flags: list[str], root: Path) -> ServiceProcess:
    port = free_port()
    log_path = root / "logs" / f"gateway-{kind}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - closed by ServiceProcess.stop
    argv = ["--host", "127.0.0.1", "--port", str(port), *flags]
    cmd = [sys.executable, __file__, "--serve-gateway", kind, "--", *argv]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)  # fmt: skip
    return ServiceProcess("gateway", "127.0.0.1", port, proc, log_path, log)


async def _cpu_round(urls: dict[str, str], order: list[str], calls: int, image: np.ndarray) -> dict[str, float]:
    """CPU ms per backend call of each client: `calls` embeds + `calls` queries, one at a time."""
    from services.common.settings import GatewaySettings
    from services.common.wire import rgb_body
    from services.gateway.backends import Backends

    gateway = GatewaySettings(embedder_url=urls["embedder"], index_url=urls["index"], detector_url=urls["detector"])
    settings = gateway.backends
    pixels = rgb_body(image)
    out = {}
    for kind in order:
        backends = Backends(settings)
        backends.client = make_pool(kind, settings.connect_timeout_s)
        vectors, _ = await backends.embed(pixels, image, None, foreground=True)  # warm: connections open
        await backends.query(vectors, 10, [None])
        t0 = time.process_time()
        for _ in range(calls):
            vectors, _ = await backends.embed(pixels, image, None, foreground=True)
            await backends.query(vectors, 10, [None])
        out[kind] = (time.process_time() - t0) * 1e3 / (2 * calls)
        await backends.close()
    return out


@dataclass
class Side:
    """What one client's rounds measured."""

    cpu_per_call_ms: list[float] = field(default_factory=list)
    passes: list[tuple[int, float]] = field(default_factory=list)  # (requests, wall s), two per round
    gateway_cpu_ms: list[float] = field(default_factory=list)
    stack_cpu_ms: list[float] = field(default_factory=list)

    def round_rps(self) -> list[float]:
        """Requests per second of each round (its two passes pooled)."""
        pairs = zip(self.passes[0::2], self.passes[1::2], strict=True)
        return [(n1 + n2) / (w1 + w2) for (n1, w1), (n2, w2) in pairs]


def p2_pass(side: Side, gateway: ServiceProcess, shared: dict[str, int], bodies: Bodies, order: list[int]) -> None:
    """One pass of `P2_CLIENTS` concurrent clients through one gateway: req/s and CPU per search."""
    pids = {**shared, "gateway": gateway.proc.pid}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    run = run_clients(gateway.url, bodies, P2_CLIENTS, order)
    if run.errors:
        raise SystemExit(f"{run.errors} errors, first: {run.first_error}")
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    n = len(run.latency_ms)
    side.passes.append((n, run.wall_s))
    side.gateway_cpu_ms.append(spent["gateway"] * 1e3 / n)
    side.stack_cpu_ms.append(sum(spent.values()) * 1e3 / n)


def report(sides: dict[str, Side], inproc_rps: list[float], args: argparse.Namespace) -> dict[str, Any]:
    """Print the table; the summary for the JSON line."""
    rps = {k: s.round_rps() for k, s in sides.items()}
    p2 = {k: median([t / base for t, base in zip(rps[k], inproc_rps, strict=True)]) for k in sides}
    per_round = median([a / h for a, h in zip(rps["aiohttp"], rps["http1"], strict=True)])
    pooled = {k: sum(n for n, _ in s.passes) / sum(w for _, w in s.passes) for k, s in sides.items()}
    stack_cpu = {k: median(s.stack_cpu_ms) for k, s in sides.items()}
    rows = [
        [k, median(s.cpu_per_call_ms), median(s.gateway_cpu_ms), stack_cpu[k], median(rps[k]), pooled[k], p2[k]]
        for k, s in sides.items()
    ]
    heads = ["client", "CPU ms/call", "gateway CPU ms/search", "all CPU ms/search", "req/s", "pooled req/s", "P2"]
    print(f"\n{args.rounds} interleaved rounds; P2 passes of {P2_CLIENTS} clients; medians over rounds\n")
    print(table(heads, rows))
    print(f"in-process one thread: {median(inproc_rps):.2f} req/s")
    print(f"aiohttp ÷ http1 throughput: {per_round:.3f} (median of rounds), {pooled['aiohttp'] / pooled['http1']:.3f} "
          f"(pooled); CPU-bound ceiling {stack_cpu['http1'] / stack_cpu['aiohttp']:.3f}")  # fmt: skip
    return {
        "cpu_per_call_ms": {k: round(median(s.cpu_per_call_ms), 4) for k, s in sides.items()},
        "gateway_cpu_ms_per_search": {k: round(median(s.gateway_cpu_ms), 2) for k, s in sides.items()},
        "stack_cpu_ms_per_search": {k: round(v, 2) for k, v in stack_cpu.items()},
        "rps": {k: round(median(v), 2) for k, v in rps.items()} | {"in-process": round(median(inproc_rps), 2)},
        "p2": {k: round(v, 3) for k, v in p2.items()},
        "aiohttp_over_http1": round(per_round, 3),
        "aiohttp_over_http1_pooled": round(pooled["aiohttp"] / pooled["http1"], 3),
        "aiohttp_over_http1_cpu_bound": round(stack_cpu["http1"] / stack_cpu["aiohttp"], 3),
        "p2_cost": round(1 - per_round, 3),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve-gateway", choices=CLIENTS, help=argparse.SUPPRESS)  # the child of start_gateway
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, default=5000, help="demo index size (default 5000)")
    ap.add_argument("--fmnist", type=int, default=33, help="Fashion-MNIST photos besides the real ones (default 33)")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    ap.add_argument("--calls", type=int, default=100, help="embed + query pairs per client per round (default 100)")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve_gateway:
        return serve_gateway(args.serve_gateway, args.rest)
    import uvloop

    from imgcore.fmnist import load_fmnist, render_shop_photo

    info_start = machine()
    t_start = time.monotonic()
    data = demo_data(args.items)
    photos = query_photos(args.fmnist)
    bodies = [(name, multipart(name, raw)) for name, raw in photos]
    image = render_shop_photo(load_fmnist("test")[0][0], np.random.default_rng(0), size=224)
    stack = start_stack(data)
    stack.services.pop("gateway").stop()  # one gateway per client instead, on the same three backends
    urls = {name: stack.url(name) for name in ("detector", "embedder", "index")}
    flags = [f"--{name}-url={url}" for name, url in urls.items()] + ["--cache-size", "0"]
    gateways = {kind: start_gateway(kind, flags, stack.root) for kind in CLIENTS}
    shared = {**stack.pids(), "bench": os.getpid()}
    sides = {kind: Side() for kind in CLIENTS}
    inproc_rps: list[float] = []
    try:
        for gateway in gateways.values():
            gateway.wait_ready(60)
            run_clients(gateway.url, bodies, P2_CLIENTS, list(range(len(bodies))), warmup=P2_CLIENTS)
        inproc = InProcess(index_version_dir(data))
        for _, raw in photos:
            inproc.search(raw)
        for r in range(args.rounds):
            order = list(CLIENTS) if r % 2 == 0 else list(reversed(CLIENTS))
            for kind, ms in uvloop.run(_cpu_round(urls, order, args.calls, image)).items():
                sides[kind].cpu_per_call_ms.append(ms)
            sequence = shuffled(len(photos), 1, seed=r)
            t0 = time.perf_counter()
            for i in sequence:
                inproc.search(photos[i][1])
            inproc_rps.append(len(sequence) / (time.perf_counter() - t0))
            for kind in order + order[::-1]:  # A B B A: a drift of the machine's load hits both alike
                p2_pass(sides[kind], gateways[kind], shared, bodies, sequence)
            print(f"round {r + 1}/{args.rounds}: in-process {inproc_rps[-1]:.1f} req/s, "
                  + ", ".join(f"{k} {s.round_rps()[-1]:.1f}" for k, s in sides.items()), flush=True)  # fmt: skip
        inproc.close()
    finally:
        for gateway in gateways.values():
            gateway.stop()
        stack.close()
    summary = report(sides, inproc_rps, args)
    machine_end = {"loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    emit(
        {
            "bench": "http_client",
            **summary,
            "rounds": args.rounds,
            "calls": args.calls,
            "items": args.items,
            "photos": len(photos),
            "wall_s": round(time.monotonic() - t_start, 1),
            "machine": {**info_start, **machine_end},
            "cache": str(CACHE),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
