"""Sale-to-kiosk delay with events polled (no webhook), at the default settings.

Each run starts the store (web and worker) in sandbox mode with SANDBOX_DELIVER off, so the
worker's poller is the only way events come in: every POLL_SECONDS it lists /v1/events.
One kiosk screen reads /stream. The bench pays --sales sessions at random intervals (so
payments fall at every point of the polling cycle) and times each from the moment the
sandbox answered the payment to the moment the screen got that sale's stock frame.
Measured, not asserted (the goal: about 1.5 s).

    python bench/poll_latency.py [--tree DIR] [--runs 3] [--sales 30]
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import harness
import requests


class Screen(threading.Thread):
    """One kiosk screen on /stream; notes when each stock_event id arrives."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        with requests.get(self.url + "/stream", stream=True, timeout=(10, 60)) as response:
            self.ready.set()
            for line in response.iter_lines():
                if line.startswith(b"id: "):
                    self.arrived.setdefault(int(line[4:]), time.time())


def one_run(tree: harness.Tree, sales: int, work: Path) -> dict:
    """Start the store, pay the sessions, and return the delays (ms)."""
    db = work / "swagstore.sqlite"
    env = harness.store_env(
        db, SANDBOX_DELIVER="false", SANDBOX_DATABASE=str(work / "sandbox.sqlite")
    )
    catalog = work / "catalog.toml"
    catalog.write_text(
        '[[item]]\nsku = "tee"\nname = "Tee"\nprice = 2500\ncurrency = "usd"\n'
        f"stock = {sales + 10}\n"
    )
    tree.flask(env, "init-db")
    tree.flask(env, "load-catalog", str(catalog))
    with harness.Server(tree, "wsgi:app", env, work / "store.log") as store:
        env["SWAGSTORE_PUBLIC_URL"] = store.url
        tree.flask(env, "sync-stripe")
        link = harness.scalar(db, "SELECT id FROM payment_link WHERE retired_at IS NULL")
        screen = Screen(store.url)
        screen.start()
        screen.ready.wait(30)
        time.sleep(1.0)
        paid_at: dict[str, float] = {}
        for _ in range(sales):
            session = requests.post(
                f"{store.url}/sandbox/payment_links/{link}/sessions", timeout=30
            ).json()
            time.sleep(random.uniform(0.1, 0.9))
            answer = requests.post(f"{store.url}/sandbox/checkout/{session['id']}/pay", timeout=30)
            answer.raise_for_status()
            paid_at[session["id"]] = time.time()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = harness.rows(db, "SELECT id, ref FROM stock_event WHERE reason = 'sale'")
            if len(rows) >= sales and all(i in screen.arrived for i, _ in rows):
                break
            time.sleep(0.2)
    delays = [
        (screen.arrived[i] - paid_at[ref]) * 1000
        for i, ref in rows
        if i in screen.arrived and ref in paid_at
    ]
    run = {
        "sales": sales,
        "seen": len(delays),
        "p50_ms": round(harness.percentile(delays, 50), 1),
        "p99_ms": round(harness.percentile(delays, 99), 1),
        "max_ms": round(max(delays, default=0.0), 1),
        "load_average": harness.load_average(),
    }
    print(json.dumps(run), flush=True)
    return run


def main() -> None:
    args = harness.arguments(__doc__, sales=30)
    tree = harness.Tree(args.tree)
    runs = []
    for _ in range(args.runs):
        with harness.workdir("poll") as work:
            runs.append(one_run(tree, args.sales, work))
    harness.save(args.out, "poll_latency", tree, {"sales": args.sales, **harness.spread(runs)})


if __name__ == "__main__":
    main()
