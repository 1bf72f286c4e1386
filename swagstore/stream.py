"""The stock-event log as server-sent events.

Each open stream is one request whose own thread polls `stock_event` for rows after the
last one it sent, every STREAM_TICK_SECONDS, and writes what it finds; after
STREAM_PING_SECONDS without news it writes a `: ping`. The poll is one indexed read in
autocommit, so it never takes SQLite's write lock and never waits for a writer (WAL).
Every process reads the shared log, not process memory, so a sale made through any
process or the worker reaches every screen. A client that resumes with Last-Event-ID
first gets every row it missed; a fresh one gets a snapshot of every item.

Following `id > last` relies on rows becoming visible in id order. SQLite guarantees it
(one writer at a time); on PostgreSQL inventory takes a per-store lock for its log rows.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import Connection, Engine, bindparam, func, select
from sqlalchemy.exc import SQLAlchemyError

from .models import Stock, StockEvent, db

log = logging.getLogger(__name__)

# Headers that keep proxies (nginx, caches) from buffering or storing the stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# How long a browser waits before reconnecting after the stream drops (EventSource `retry`).
RETRY_MS = 1000
# A process with no room left sends its clients away for longer.
BUSY_RETRY_MS = 10_000
# Rows sent per poll; a client that is far behind catches up over several ticks.
BATCH = 500
# A Last-Event-ID longer than this is no id of ours (2**63 has 19 digits).
MAX_ID_DIGITS = 18
EXTENSION = "swagstore.stream"

# Built once: every open stream runs this every tick.
_SINCE = (
    select(
        StockEvent.id, StockEvent.sku, StockEvent.store, StockEvent.on_hand, StockEvent.reserved
    )
    .where(StockEvent.store == bindparam("store"), StockEvent.id > bindparam("last"))
    .order_by(StockEvent.id)
    .limit(BATCH)
)


@dataclass(frozen=True)
class Change:
    """One item's stock level after a logged change, as the stream sends it."""

    id: int
    sku: str
    store: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def encode(self) -> str:
        """Return this change as one SSE message."""
        data = {
            "sku": self.sku,
            "store": self.store,
            "available": self.available,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "sold_out": self.available <= 0,
        }
        return f"id: {self.id}\nevent: stock\ndata: {json.dumps(data)}\n\n"


def parse_last_event_id(value: str | None) -> int | None:
    """Return the event id a reconnecting client last saw, or None for a fresh client.

    Anything but a plain number that fits a 64-bit column is a fresh client (a snapshot).
    """
    value = (value or "").strip()
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_ID_DIGITS:
        return None
    return int(value)


class Streams:
    """One store's open streams in this process: each polls the log on its own thread.

    Fair shares: at most `max_clients` streams in all and `max_per_client` from one client
    address; the booth's own kiosk is never refused and not counted against either.
    """

    def __init__(
        self,
        engine: Engine,
        store: str,
        *,
        tick: float = 0.25,
        ping: float = 15.0,
        max_clients: int = 16,
        max_per_client: int = 4,
    ) -> None:
        self.engine = engine
        self.store = store
        self.tick = tick
        self.ping = ping
        self.max_clients = max_clients
        self.max_per_client = max_per_client
        self._lock = threading.Lock()
        self._clients = 0
        # Open streams by client address (the kiosk's are not counted).
        self._by_client: Counter[str] = Counter()
        self._closed = False

    @property
    def clients(self) -> int:
        """Return the number of clients streaming from this process."""
        with self._lock:
            return self._clients

    def follow(
        self, last_id: int | None, client: str = "", *, kiosk: bool = False
    ) -> Iterator[str]:
        """Yield SSE text for one client: its catch-up, then live changes and pings."""
        with self._lock:
            closed = self._closed
            refusal = None if closed or kiosk else self._refusal(client)
            admitted = not closed and refusal is None
            if admitted:
                self._clients += 1
                if not kiosk:
                    self._by_client[client] += 1
        if closed:  # a stopping server: come back as soon as the restarted one is up
            yield f"retry: {RETRY_MS}\n\n"
            return
        if refusal is not None:
            yield f"retry: {BUSY_RETRY_MS}\n{refusal}\n\n"
            return
        try:
            yield f"retry: {RETRY_MS}\n\n"
            changes, last = self.catch_up(last_id)
            if changes:
                yield _text(changes)
            quiet_since = time.monotonic()
            while True:
                time.sleep(self.tick)
                if self._closed:
                    return
                with self._connect() as conn:
                    changes = _since(conn, self.store, last)
                if changes:
                    last = changes[-1].id
                    quiet_since = time.monotonic()
                    yield _text(changes)
                elif time.monotonic() - quiet_since >= self.ping:
                    # Also how a stream learns that its client has gone: the write fails.
                    quiet_since = time.monotonic()
                    yield ": ping\n\n"
        except SQLAlchemyError:
            # The browser reconnects in RETRY_MS and resumes from its Last-Event-ID.
            log.exception("stream: reading stock_event failed; ending the stream")
        finally:
            with self._lock:
                self._clients -= 1
                if not kiosk:
                    self._by_client[client] -= 1
                    if not self._by_client[client]:
                        del self._by_client[client]

    def _refusal(self, client: str) -> str | None:
        """Return why a stranger's stream is refused (an SSE comment), or None (the lock held)."""
        if self._by_client[client] >= self.max_per_client:
            return ": busy: too many streams from your address"
        if sum(self._by_client.values()) >= self.max_clients:
            return ": busy"
        return None

    def catch_up(self, last_id: int | None) -> tuple[list[Change], int]:
        """Return what a client starting after `last_id` must see first, and its new last id.

        A fresh client (None), or one whose id is beyond the log (the database was reset),
        gets a snapshot: every item's current level, each with the newest event id.
        """
        with self._connect() as conn:
            if last_id is not None and last_id <= _max_id(conn, self.store):
                changes = _since(conn, self.store, last_id)
                return changes, changes[-1].id if changes else last_id
            return _snapshot(conn, self.store)

    def close(self) -> None:
        """End every stream of this process at its next tick and refuse new ones."""
        with self._lock:
            self._closed = True

    def _connect(self) -> Connection:
        # AUTOCOMMIT skips the app's BEGIN IMMEDIATE, so polling never takes the write lock.
        # A connection is taken from the pool per read, never held across a tick.
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _text(changes: list[Change]) -> str:
    return "".join(change.encode() for change in changes)


def _max_id(conn: Connection, store: str) -> int:
    return conn.scalar(select(func.max(StockEvent.id)).where(StockEvent.store == store)) or 0


def _since(conn: Connection, store: str, last: int) -> list[Change]:
    return [Change(*row) for row in conn.execute(_SINCE, {"store": store, "last": last})]


def _snapshot(conn: Connection, store: str) -> tuple[list[Change], int]:
    # One statement reads the levels and the newest id from one consistent view.
    newest = (
        select(func.coalesce(func.max(StockEvent.id), 0))
        .where(StockEvent.store == store)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(newest, Stock.sku, Stock.store, Stock.on_hand, Stock.reserved)
        .where(Stock.store == store)
        .order_by(Stock.sku)
    ).all()
    if not rows:
        return [], _max_id(conn, store)
    return [Change(*row) for row in rows], rows[0][0]


def init_app(app: Flask) -> None:
    """Give the app its streams, reading the app's database for its store."""
    app.config.setdefault("STREAM_PING_SECONDS", 15)
    app.config.setdefault("STREAM_TICK_SECONDS", 0.25)
    app.config.setdefault("STREAM_MAX_CLIENTS", 16)
    app.config.setdefault("STREAM_MAX_PER_CLIENT", 4)
    with app.app_context():
        engine = db.engine
    app.extensions[EXTENSION] = Streams(
        engine,
        app.config["STORE_ID"],
        tick=float(app.config["STREAM_TICK_SECONDS"]),
        ping=float(app.config["STREAM_PING_SECONDS"]),
        max_clients=int(app.config["STREAM_MAX_CLIENTS"]),
        max_per_client=int(app.config["STREAM_MAX_PER_CLIENT"]),
    )


def streams(app: Flask) -> Streams:
    """Return the app's streams."""
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]
