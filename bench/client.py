"""The load generator, run as its own process so it never shares a CPU budget with the server.

    client.py post URL FILE CONCURRENCY   POST each JSON line {"body", "headers"} of FILE
    client.py get URL FILE CONCURRENCY    GET each path line of FILE, one cookie jar each
    client.py stream URL CLIENTS TIMEOUT  open CLIENTS /stream connections, print "ready",
                                          then time the first stock event after it
Prints one JSON object of figures (times in milliseconds, clocks in epoch seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=120)


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        if not ordered:
            return 0.0
        return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]

    return {
        "p50_ms": round(pct(50) * 1000, 2),
        "p99_ms": round(pct(99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
    }


async def post(url: str, path: str, concurrency: int) -> dict:
    with open(path) as f:
        requests = [json.loads(line) for line in f]
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:

        async def worker() -> None:
            while not queue.empty():
                r = queue.get_nowait()
                start = time.perf_counter()
                try:
                    async with session.post(url, data=r["body"], headers=r["headers"]) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                except (TimeoutError, aiohttp.ClientError) as e:
                    statuses[type(e).__name__] += 1
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "count": len(requests),
        "wall_s": round(wall, 3),
        "statuses": dict(statuses),
        **summary(latencies),
    }


async def get(url: str, path: str, concurrency: int) -> dict:
    with open(path) as f:
        paths = [line.strip() for line in f if line.strip()]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    gate = asyncio.Event()
    # One connection per visitor, all opened before the start line, as a crowd's phones would.
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as shared:

        async def visitor(p: str) -> None:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(
                connector=shared.connector,
                connector_owner=False,
                cookie_jar=jar,
                timeout=TIMEOUT,
            ) as session:
                await gate.wait()
                start = time.perf_counter()
                try:
                    async with session.get(url + p, allow_redirects=False) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                except (TimeoutError, aiohttp.ClientError) as e:
                    statuses[type(e).__name__] += 1
                latencies.append(time.perf_counter() - start)

        tasks = [asyncio.create_task(visitor(p)) for p in paths]
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return {
        "count": len(paths),
        "wall_s": round(wall, 3),
        "statuses": dict(statuses),
        **summary(latencies),
    }


async def stream(url: str, clients: int, timeout: float) -> dict:
    """Hold `clients` streams open; after "ready", note when each sees its next stock event."""
    live = 0
    all_live = asyncio.Event()
    armed = False  # set once "ready" is printed: the driver makes its sale after that
    received: list[float] = []
    failures: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=0)
    no_total = aiohttp.ClientTimeout(total=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=no_total) as session:

        async def client() -> None:
            nonlocal live
            snapshot_done = False
            try:
                async with session.get(url, headers={"Accept": "text/event-stream"}) as resp:
                    if resp.status != 200:
                        failures[f"status {resp.status}"] += 1
                        return
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith(": busy"):
                            failures["refused: server full"] += 1
                            return
                        if line.startswith("id:") and armed:
                            received.append(time.time())
                            return
                        if line.startswith("id:") and not snapshot_done:
                            # The snapshot arrives in one write; its end makes this client live.
                            snapshot_done = True
                            live += 1
                            if live == clients:
                                all_live.set()
            except (TimeoutError, aiohttp.ClientError) as e:
                failures[type(e).__name__] += 1

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_live.wait(), timeout)
        # Let the last snapshots drain before arming, so no snapshot row counts as the sale.
        await asyncio.sleep(1.0)
        armed = True
        print(json.dumps({"ready": live}), flush=True)
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return {
        "clients": clients,
        "live": live,
        "received": received,
        "failures": dict(failures),
    }


def main() -> None:
    mode, url, a, b = sys.argv[1:5]
    if mode == "post":
        result = asyncio.run(post(url, a, int(b)))
    elif mode == "get":
        result = asyncio.run(get(url, a, int(b)))
    else:
        result = asyncio.run(stream(url, int(a), float(b)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
