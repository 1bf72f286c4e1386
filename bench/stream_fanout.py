"""Stream fan-out: commit-to-screen latency with 1 client versus many, and memory per stream.

Starts gunicorn (2 gthread workers) on a temporary SQLite database, opens N /stream clients
(each reading in its own thread), commits stock changes from this process and times each
from its commit to its arrival at every client. Prints p50/p95/max latency for the 1-client
baseline and for N clients, the ratio between them, and the workers' memory per open stream.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swagstore import create_app, inventory  # noqa: E402
from swagstore.catalog import Item, load  # noqa: E402
from swagstore.cli import init_db  # noqa: E402
from swagstore.models import db  # noqa: E402

STORE = "booth"
WORKERS, THREADS = 2, 128
MANY = 200
CHANGES = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total


class Client(threading.Thread):
    """One /stream reader recording when each event id arrived."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/stream")
        self.response = self.conn.getresponse()
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            while line := self.response.readline():
                if line.startswith(b"id: "):
                    self.arrived.setdefault(int(line[4:]), time.monotonic())
                    self.ready.set()
        except OSError:
            pass

    def stop(self) -> None:
        """End the read loop; close() once the thread has finished."""
        self.conn.sock.shutdown(socket.SHUT_RDWR)


def measure(app, port: int, n: int, workers: list[int]) -> tuple[list[float], float]:
    before = rss_kib(workers)
    clients = [Client(port) for _ in range(n)]
    for c in clients:
        c.start()
    for c in clients:
        c.ready.wait(60)
    per_stream = (rss_kib(workers) - before) / n
    committed: dict[int, float] = {}
    with app.app_context():
        for _ in range(CHANGES):
            inventory.take("mug", STORE)
            db.session.commit()
            committed[_newest()] = time.monotonic()
            time.sleep(0.1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
        committed.keys() <= c.arrived.keys() for c in clients
    ):
        time.sleep(0.05)
    latencies = [c.arrived[i] - t for c in clients for i, t in committed.items()]
    for c in clients:
        c.stop()
    for c in clients:
        c.join(10)
        c.conn.close()
    return latencies, per_stream


def _newest() -> int:
    from sqlalchemy import func, select

    from swagstore.models import StockEvent

    return db.session.scalar(select(func.max(StockEvent.id)))


def summary(name: str, latencies: list[float]) -> float:
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(
        f"{name:>12}: {len(ms):5d} deliveries"
        f"  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms"
    )
    return p50


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="swagstore-bench-")
    config = {
        "SECRET_KEY": "bench",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.sqlite",
        "STORE_ID": STORE,
    }
    app = create_app(config)
    with app.app_context():
        init_db()
        load([Item("mug", "Mug", 1800, "usd", 10_000)], STORE)
        db.session.commit()
    port = free_port()
    env = {**os.environ, **{f"SWAGSTORE_{k}": v for k, v in config.items()}}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--threads",
            str(THREADS),
            "--access-logfile",
            "/dev/null",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        with open(f"/proc/{server.pid}/task/{server.pid}/children") as f:
            workers = [int(p) for p in f.read().split()]
        print(f"gunicorn: {WORKERS} gthread workers x {THREADS} threads")
        print(
            f"{CHANGES} stock changes, 100 ms apart; reader tick: the STREAM_TICK_SECONDS default"
        )
        base, _ = measure(app, port, 1, workers)
        many, per_stream = measure(app, port, MANY, workers)
        p1 = summary("1 client", base)
        pn = summary(f"{MANY} clients", many)
        print(f"ratio p50 {MANY} clients / 1 client: {pn / p1:.2f}")
        print(f"worker memory per open stream: {per_stream:.0f} KiB")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
