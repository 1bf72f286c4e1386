"""Sandbox round trips through the real SDK: in process (CLI, server) versus HTTP (tests).

Creates a temporary SQLite database, then times the same calls both ways: create a product,
a price and a payment link, open and pay a Checkout Session, retrieve it. Prints the median
and p95 per call for each transport, the ratio HTTP / in-process, and sync-stripe's time for
the demo catalog (10 items) in process. Run it with the Python of the tree it measures:

    TREE/.venv/bin/python bench/sandbox_calls.py [--tree TREE]
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

# The tree is imported below, so its path is read before argparse could run.
ROOT = Path(__file__).resolve().parent.parent
if "--tree" in sys.argv:
    ROOT = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from swagstore import catalog, create_app, payments, stripe_sync  # noqa: E402
from swagstore.cli import init_db  # noqa: E402
from swagstore.models import db  # noqa: E402

ROUNDS = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_round(app, pay_url: str) -> float:
    """Run one purchase's worth of calls; return seconds per call."""
    started = time.perf_counter()
    # The test client's requests run outside this block: inside it they would share its
    # database session and leave a transaction open across the next Stripe call.
    with app.app_context():
        gw = payments.gateway()
        product = gw.create_product({"name": "Bench tee"}, None)
        price = gw.create_price(
            {"product": product.id, "unit_amount": 2500, "currency": "usd"}, None
        )
        link = gw.create_payment_link({"line_items": [{"price": price.id, "quantity": 1}]}, None)
    opened = app.test_client().post(f"/sandbox/payment_links/{link.id}/sessions").json
    if pay_url:
        requests.post(f"{pay_url}/sandbox/checkout/{opened['id']}/pay", timeout=60)
    else:
        app.test_client().post(f"/sandbox/checkout/{opened['id']}/pay")
    with app.app_context():
        payments.gateway().retrieve_checkout_session(opened["id"])
    return (time.perf_counter() - started) / 6


def measure(app, pay_url: str = "") -> list[float]:
    one_round(app, pay_url)  # warm up
    return sorted(one_round(app, pay_url) for _ in range(ROUNDS))


def summary(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"{name:<12} median {median * 1000:7.1f} ms/call   p95 {p95 * 1000:7.1f} ms/call")
    return median


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/bench.sqlite"
        config = {
            "SECRET_KEY": "bench",
            "SQLALCHEMY_DATABASE_URI": uri,
            "SANDBOX_DATABASE": f"{tmp}/sandbox.sqlite",
        }
        app = create_app({**config, "TESTING": True})
        with app.app_context():
            init_db()
            items = catalog.read(str(ROOT / "instance" / "catalog.toml"))
            catalog.load(items, "booth")
            db.session.commit()
            started = time.perf_counter()
            stripe_sync.sync_stripe("booth", "automatic", payments.gateway(), echo=lambda _: None)
            synced = time.perf_counter() - started
        in_process = summary("in process", measure(app))

        port = free_port()
        env = {**os.environ, **{f"SWAGSTORE_{k}": v for k, v in config.items()}}
        env["SWAGSTORE_SANDBOX_DELIVER"] = "false"
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8",
             "--access-logfile", "/dev/null", "wsgi:app"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    requests.get(url + "/healthz", timeout=5)
                    break
                except requests.RequestException:
                    time.sleep(0.2)
            app.config["STRIPE_API_BASE"] = url + "/sandbox"
            payments.close(app)
            over_http = summary("over HTTP", measure(app, url))
        finally:
            payments.close(app)
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        print(f"ratio HTTP / in process: {over_http / in_process:.2f}")
        print(f"sync-stripe, 10 demo items, in process: {synced:.2f} s")


if __name__ == "__main__":
    main()
