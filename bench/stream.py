"""Sale-to-screen delay: from a sale's commit until every open /stream client has it.

Each run starts the store on a fresh SQLite file with threads enough for every client
(each open stream holds one), opens first 1 and then 200 kiosk screens (one asyncio loop
in this process reads them all and notes when each event id arrives), and makes --sales
sales through the signed webhook at random intervals, so they fall at every point of the
stream's polling cycle. A sale's delay, per screen, runs from its stock_event row being
written (in the sale's transaction, just before the commit) to that screen having the
event. The 1-screen figures are the baseline for the 200.

    python bench/stream.py [--tree DIR] [--runs 3] [--sales 30] [--clients 200]
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import events
import harness


class Screens(threading.Thread):
    """N kiosk screens on /stream, read by one asyncio loop that notes each id's arrival."""

    def __init__(self, port: int, n: int) -> None:
        super().__init__(daemon=True)
        self.port, self.n = port, n
        self.arrived: list[dict[int, float]] = [{} for _ in range(n)]
        self.failures: Counter[str] = Counter()
        self.connected = 0
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._watch_all())

    def stop(self) -> None:
        """Close every screen's connection and end the loop."""
        self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(30)

    async def _watch_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        screens = [asyncio.create_task(self._watch(i)) for i in range(self.n)]
        await self._stopping.wait()
        for task in screens:
            task.cancel()
        await asyncio.gather(*screens, return_exceptions=True)

    async def _watch(self, i: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
        except OSError as e:
            self.failures[type(e).__name__] += 1
            return
        try:
            request = (
                "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            writer.write(request.encode())
            status = await reader.readline()
            if b" 200 " not in status:
                self.failures[status.decode().strip() or "closed"] += 1
                return
            self.connected += 1
            if self.connected == self.n:
                self.ready.set()
            # Frames arrive whole (one chunk each), so their lines are lines of the body.
            while line := await reader.readline():
                if line.startswith(b"id: "):
                    self.arrived[i].setdefault(int(line[4:]), time.time())
                elif line.startswith(b": busy"):
                    self.failures["refused: server full"] += 1
        except OSError as e:
            self.failures[type(e).__name__] += 1
        finally:
            writer.close()


def logged_at(db: Path, after: int) -> dict[int, float]:
    """Return when each sale's stock_event row after id `after` was written (epoch s)."""
    found = harness.rows(
        db, "SELECT id, at FROM stock_event WHERE id > ? AND reason = 'sale'", after
    )
    return {i: datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp() for i, at in found}


def measure(store: harness.Server, db: Path, clients: int, sales: int) -> dict:
    """Open the screens, make the sales, and return the delays (ms) and what was missed."""
    screens = Screens(store.port, clients)
    screens.start()
    screens.ready.wait(60)
    time.sleep(1.0)  # every screen past its snapshot
    last = harness.scalar(db, "SELECT max(id) FROM stock_event") or 0
    statuses = Counter()
    for n in range(sales):
        statuses[events.post(store.url + "/stripe/webhook", events.completed(n))] += 1
        time.sleep(random.uniform(0.2, 0.6))
    committed = logged_at(db, last)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        committed.keys() <= seen.keys() for seen in screens.arrived
    ):
        time.sleep(0.1)
    screens.stop()
    delays = [seen[i] - at for seen in screens.arrived for i, at in committed.items() if i in seen]
    return {
        "clients": clients,
        "connected": screens.connected,
        "sales": len(committed),
        "sale_answers": {str(k): v for k, v in statuses.items()},
        "deliveries": len(delays),
        "missed": clients * len(committed) - len(delays),
        "failures": dict(screens.failures),
        "p50_ms": round(harness.percentile(delays, 50) * 1000, 1),
        "p99_ms": round(harness.percentile(delays, 99) * 1000, 1),
        "max_ms": round(max(delays, default=0.0) * 1000, 1),
    }


def one_run(tree: harness.Tree, args, work: Path) -> dict:
    """Measure 1 screen, then args.clients screens, on a fresh server and database."""
    db = work / "swagstore.sqlite"
    # Room for every stream on one worker and 16 threads to spare: the kernel's spread of
    # connections over the workers (SO_REUSEPORT) is uneven.
    threads = str(args.clients + 16)
    env = harness.store_env(
        db,
        STRIPE_WEBHOOK_SECRET=events.SECRET,
        STORE_ID=events.STORE,
        THREADS=threads,
        STREAM_MAX_CLIENTS=str(args.clients),
    )
    tree.flask(env, "init-db")
    tree.flask(env, "load-catalog", str(events.catalog(work / "catalog.toml", 1000)))
    with harness.Server(tree, "wsgi:app", env, work / "store.log", threads=threads) as store:
        one = measure(store, db, 1, args.sales)
        many = measure(store, db, args.clients, args.sales)
    run = {
        **{f"one_{k}": v for k, v in one.items()},
        **{f"many_{k}": v for k, v in many.items()},
        "ratio_p50": round(many["p50_ms"] / max(one["p50_ms"], 0.1), 2),
        "ratio_p99": round(many["p99_ms"] / max(one["p99_ms"], 0.1), 2),
        "load_average": harness.load_average(),
    }
    print(json.dumps(run), flush=True)
    return run


def main() -> None:
    args = harness.arguments(__doc__, sales=30, clients=200)
    tree = harness.Tree(args.tree)
    runs = []
    for _ in range(args.runs):
        with harness.workdir("stream") as work:
            runs.append(one_run(tree, args, work))
    harness.save(
        args.out,
        "stream",
        tree,
        {
            "sales": args.sales,
            "clients": args.clients,
            "missed": sum(r["one_missed"] + r["many_missed"] for r in runs),
            **harness.spread(runs),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
