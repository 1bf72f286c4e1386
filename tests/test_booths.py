"""Several booths, one PostgreSQL database: each with its own store, all with the same rules."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from conftest import LiveServer, make_item, needs_postgres, race
from swagstore import create_app
from swagstore.catalog import load
from swagstore.cli import init_db
from swagstore.models import Stock, StockEvent, Store, db

pytestmark = needs_postgres
HERE = Path(__file__).resolve().parent
STOCK = {"north": 60, "south": 40}

# One booth starting: its own app on the shared database, waiting for the common start line.
INIT_BOOTH = """
import sys, time
from swagstore import create_app
from swagstore.cli import init_db
uri, store, start_at, sandbox = sys.argv[1:5]
app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "x", "STORE_ID": store,
                  "SANDBOX_DATABASE": sandbox})
with app.app_context():
    time.sleep(max(0.0, float(start_at) - time.time()))
    init_db()
"""


def booth_config(url: str, store: str, sandbox: Path | None = None) -> dict:
    config = {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-secret-key", "STORE_ID": store}
    # The booths share one offline Stripe account: one sandbox file, in the test's directory.
    return {**config, "SANDBOX_DATABASE": str(sandbox)} if sandbox else config


def query(url: str, stmt) -> list:
    app = create_app(booth_config(url, "north"))
    with app.app_context():
        rows = db.session.execute(stmt).all()
        db.session.remove()
        db.engine.dispose()
    return [tuple(r) for r in rows]


@pytest.fixture
def booths(postgres_database_url: str, tmp_path: Path) -> Iterator[dict[str, LiveServer]]:
    """Two booths' servers on one database, stocked differently from one catalog."""
    for store, stock in STOCK.items():
        app = create_app(booth_config(postgres_database_url, store, tmp_path / "sandbox.sqlite"))
        with app.app_context():
            init_db()
            load([make_item("tee-m", stock=stock), make_item("mug", stock=5)], store)
            db.session.commit()
            db.engine.dispose()
    servers: dict[str, LiveServer] = {}
    try:
        for store in STOCK:
            env = {
                "SWAGSTORE_" + k: v
                for k, v in booth_config(
                    postgres_database_url, store, tmp_path / "sandbox.sqlite"
                ).items()
            }
            servers[store] = LiveServer(env, workers=2, threads=4)
            servers[store].start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def stock_of(server: LiveServer) -> dict:
    body = requests.get(server.url + "/api/stock", timeout=10).json()
    return {"store": body["store"], **{i["sku"]: i["available"] for i in body["items"]}}


def test_booths_starting_together_create_one_schema(postgres_database_url, tmp_path):
    start_at = str(time.time() + 5.0)
    stores = [f"hall-{n}" for n in range(6)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                INIT_BOOTH,
                postgres_database_url,
                store,
                start_at,
                str(tmp_path / "sandbox.sqlite"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for store in stores
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(stores), "\n".join(errors)
    assert sorted(query(postgres_database_url, select(Store.id))) == [(s,) for s in stores]


def test_each_booth_sees_only_its_own_stock(booths):
    assert stock_of(booths["north"]) == {"store": "north", "tee-m": 60, "mug": 5}
    assert stock_of(booths["south"]) == {"store": "south", "tee-m": 40, "mug": 5}


def test_booths_racing_on_one_database_keep_every_invariant(booths, postgres_database_url):
    # Both booths' servers keep answering while their stock drains.
    seen: dict[str, set[int]] = {store: set() for store in STOCK}
    done = threading.Event()

    def watch(store: str) -> None:
        while not done.is_set():
            seen[store].add(stock_of(booths[store])["tee-m"])

    watchers = [threading.Thread(target=watch, args=(store,)) for store in STOCK]
    for w in watchers:
        w.start()
    try:
        stores = [store for store in STOCK for _ in range(4)]
        results = race(postgres_database_url, ["take"] * 8, 30, stores=stores)
    finally:
        done.set()
        for w in watchers:
            w.join(timeout=30)
    assert len(results) == 8

    for store, units in STOCK.items():
        assert sum(r["ok"] for r in results if r["store"] == store) == units
        assert stock_of(booths[store]) == {"store": store, "tee-m": 0, "mug": 5}
        assert all(0 <= n <= units for n in seen[store])
        takes = query(
            postgres_database_url,
            select(StockEvent.on_hand)
            .where(StockEvent.store == store, StockEvent.reason == "take")
            .order_by(StockEvent.id),
        )
        # Each booth's log counts down by one, with no step lost to the other booth.
        assert [n for (n,) in takes] == list(range(units - 1, -1, -1))
    levels = query(postgres_database_url, select(Stock.store, Stock.sku, Stock.on_hand))
    assert sorted(levels) == [
        ("north", "mug", 5),
        ("north", "tee-m", 0),
        ("south", "mug", 5),
        ("south", "tee-m", 0),
    ]
