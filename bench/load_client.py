"""The load generator of bench/e2e.py: N concurrent clients, each one kept-alive connection, sending
pre-built multipart photos to the gateway's `/v1/search`.

The default client is aiohttp's (the gateway's own backend client). httpx's AsyncClient, which e2e used
before (CHANGELOG.md), spent 1.9 ms more of its own time per search on this machine (side by side by
the command below; docs/benchmarks.md): time a client spends in itself is counted in the e2e latency but
is not the system's, and on two cores it also competes with the services. `--client httpx` keeps the old
numbers reproducible.

`python bench/load_client.py` measures both clients side by side on one stack (kept-alive connections,
requests alternated in a shuffled order): client-seen latency minus the gateway's own `total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
import orjson

BOUNDARY = "imgsearch-bench-0c5e1f"
CLIENTS = ("aiohttp", "httpx")

Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]


def multipart(name: str, data: bytes) -> bytes:
    """A `multipart/form-data` body with the photo in field `image`."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Run:
    """Results of one load phase."""

    clients: int
    wall_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    server: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return len(self.latency_ms) / self.wall_s if self.wall_s else 0.0


async def _load(post: Post, bodies: list[tuple[str, bytes]], clients: int, order: list[int], warmup: int) -> Run:
    run = Run(clients)

    async def one(i: int, record: bool) -> None:
        name, body = bodies[i]
        t0 = time.perf_counter()
        status, content = await post(body)
        ms = (time.perf_counter() - t0) * 1e3
        if status != 200:
            run.errors += 1
            run.first_error = run.first_error or f"{status} {content[:300].decode('utf-8', 'replace')}"
            return
        if record:
            run.latency_ms.append(ms)
            run.names.append(name)
            for stage, value in orjson.loads(content)["timings_ms"].items():
                run.server[stage].append(float(value))

    await asyncio.gather(*(one(order[j % len(order)], False) for j in range(max(warmup, clients))))
    queue = iter(order)

    async def worker() -> None:
        for i in queue:  # a shared iterator: each request is taken by exactly one worker
            await one(i, True)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    run.wall_s = time.perf_counter() - t0
    return run


@contextlib.asynccontextmanager
async def poster(client: str, url: str, connections: int) -> AsyncIterator[Post]:
    """`post(body) -> (status, content)` to the gateway's `/v1/search` through `client`, at most `connections`
    kept-alive connections, open until the block ends."""
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if client == "httpx":
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False) as http:

            async def post_httpx(body: bytes) -> tuple[int, bytes]:
                resp = await http.post(url + "/v1/search", params={"k": 10}, content=body, headers=headers)
                return resp.status_code, resp.content

            yield post_httpx
        return
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:

        async def post_aiohttp(body: bytes) -> tuple[int, bytes]:
            async with session.post(url + "/v1/search", params={"k": "10"}, data=body, headers=headers) as resp:
                return resp.status, await resp.read()

        yield post_aiohttp


async def _run(
    url: str, bodies: list[tuple[str, bytes]], clients: int, order: list[int], warmup: int, client: str
) -> Run:
    async with poster(client, url, clients) as post:
        return await _load(post, bodies, clients, order, warmup)


def run_clients(
    url: str,
    bodies: list[tuple[str, bytes]],
    clients: int,
    order: list[int],
    warmup: int = 0,
    client: str = "aiohttp",
) -> Run:
    """Send bodies[order[...]] through `clients` concurrent connections; latencies and server timings."""
    return asyncio.run(_run(url, bodies, clients, order, warmup, client))


async def _side_by_side(url: str, bodies: list[tuple[str, bytes]], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(client-seen ms, gateway total ms) per search and client; both clients kept open, order shuffled."""
    import numpy as np

    got: dict[str, list[tuple[float, float]]] = {client: [] for client in CLIENTS}
    async with contextlib.AsyncExitStack() as stack:
        send = {client: await stack.enter_async_context(poster(client, url, 1)) for client in CLIENTS}
        rng = np.random.default_rng(0)
        for r in range(rounds + 1):  # round 0 warms both
            for i in rng.permutation(len(bodies)):
                for name in rng.permutation(CLIENTS):
                    t0 = time.perf_counter()
                    _, content = await send[str(name)](bodies[int(i)][1])
                    ms = (time.perf_counter() - t0) * 1e3
                    if r:
                        got[str(name)].append((ms, float(orjson.loads(content)["timings_ms"]["total"])))
    return got


def main() -> int:
    """The clients side by side on one stack: what each adds to a search beyond the gateway's own total."""
    import sys

    from common import arg_parser, demo_data, emit, machine, pct, query_photos, start_stack, table

    ap = arg_parser("python bench/load_client.py [--rounds 6]: each client's own time per search, interleaved")
    ap.add_argument("--rounds", type=int, default=6, help="passes over the photos (default 6)")
    ap.add_argument("--fmnist", type=int, default=14, help="Fashion-MNIST shop photos (default 14)")
    args = ap.parse_args()
    info = machine()
    bodies = [(name, multipart(name, raw)) for name, raw in query_photos(args.fmnist)]
    stack = start_stack(demo_data(5000), {"gateway": ["--cache-size", "0"]})
    try:
        got = asyncio.run(_side_by_side(stack.gateway_url, bodies, args.rounds))
    finally:
        stack.close()
    seen = {c: pct([ms for ms, _ in got[c]])["p50"] for c in CLIENTS}
    outside = {c: pct([ms - total for ms, total in got[c]])["p50"] for c in CLIENTS}
    rows = [[c, seen[c], outside[c], len(got[c])] for c in CLIENTS]
    print(table(["client", "client-seen p50", "client-seen - gateway total p50", "n"], rows), file=sys.stderr)
    emit(
        {
            "bench": "load_client",
            "outside_ms": {c: round(v, 2) for c, v in outside.items()},
            "client_seen_ms": {c: round(v, 2) for c, v in seen.items()},
            "machine": info,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
