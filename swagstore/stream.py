"""The stock-event log as server-sent events.

One reader thread per process follows `stock_event` and fans new rows out to that
process's open clients through a shared ring buffer, so a thousand clients cost one query
per read, not a thousand, and one JSON encoding per row. The reader reads at
once when a commit in its own process logged a change (inventory marks the session, an
after_commit listener wakes the reader), and on a short tick for the other processes' sales:
every worker reads the shared log, not process memory, so a sale made through one worker
reaches the clients of all of them. A client that resumes with Last-Event-ID, or falls
behind the buffer, reads its gap from the database first.

Under gunicorn the reader also writes each read straight to the sockets of the clients
that are up to date, as one HTTP/1.1 chunk, with a send that never waits: waking a thread
per client to do it cost a thousand clients about 100 ms on two cores (bench/stream.py).
Each client's own thread stays parked and writes only what the reader left it: a gap, the
rest of a frame a full socket buffer did not take, or a ping.

Following `id > last` relies on rows becoming visible in id order. SQLite guarantees it
(one writer at a time, ids from max + 1). On PostgreSQL two transactions can commit out of
id order; a row that lands behind a newer one is then missed by live clients until that
item's next change (a reconnect or reload shows the right count).
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import Connection, Engine, bindparam, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .inventory import CHANGED
from .models import Stock, StockEvent, db

log = logging.getLogger(__name__)

# Headers that keep proxies (nginx, caches) from buffering or storing the stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# How long a browser waits before reconnecting after the stream drops (EventSource `retry`).
RETRY_MS = 1000
# A process with no room left sends its clients away for longer.
BUSY_RETRY_MS = 10_000
# Rows read per query; a reader that is behind catches up in several reads.
BATCH = 500

_brokers: weakref.WeakSet[Broker] = weakref.WeakSet()
# Built once: the reader runs this every tick in every process.
_SINCE = (
    select(
        StockEvent.id, StockEvent.sku, StockEvent.store, StockEvent.on_hand, StockEvent.reserved
    )
    .where(StockEvent.store == bindparam("store"), StockEvent.id > bindparam("last"))
    .order_by(StockEvent.id)
)
_SINCE_BATCH = _SINCE.limit(BATCH)


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


def direct_socket(environ: dict[str, Any]) -> socket.socket | None:
    """Return the client's socket if the reader may write the stream's chunks to it itself."""
    sock = environ.get("gunicorn.socket")
    # gunicorn sends an HTTP/1.1 response of unknown length in chunks, which the reader can
    # frame too; TLS sockets take no flags on send, so those streams keep their thread.
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1" or type(sock) is not socket.socket:
        return None
    return sock


def parse_last_event_id(value: str | None) -> int | None:
    """Return the event id a reconnecting client last saw, or None for a fresh client."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class Broker:
    """Follow one store's stock_event rows with one thread and hand them to every client."""

    def __init__(
        self,
        engine: Engine,
        store: str,
        *,
        tick: float = 0.02,
        ping: float = 15.0,
        max_clients: int = 100,
        buffer: int = 1024,
    ) -> None:
        self.engine = engine
        self.store = store
        self.tick = tick
        self.ping = ping
        self.max_clients = max_clients
        self._lock = threading.Lock()
        # One parked lock per waiting client, released by the reader after each read.
        self._waiters: list[_thread.LockType] = []
        # (id, SSE text) of the newest rows, encoded once by the reader for every client.
        self._buffer: deque[tuple[int, str]] = deque(maxlen=buffer)
        self._floor = 0  # the buffer holds every row of this store after this id
        self._head = 0  # the newest row the reader has seen
        # The newest read as one tuple, replaced whole so a woken client reads it without
        # the lock that hundreds of other woken clients want too: (head, id before the
        # read's rows, their text, closed). Most clients were at that id and send the text.
        self._news: tuple[int, int, str, bool] = (0, 0, "", False)
        self._wake = threading.Event()
        # Clients whose sockets the reader writes to (see _serve_direct).
        self._direct: list[_Direct] = []
        self._clients = 0
        self._reader: threading.Thread | None = None
        self._closed = False
        _brokers.add(self)

    @property
    def clients(self) -> int:
        """Return the number of clients streaming from this process."""
        with self._lock:
            return self._clients

    def follow(self, last_id: int | None, sock: socket.socket | None = None) -> Iterator[str]:
        """Yield SSE text for one client: its catch-up, then live changes and pings.

        Given the client's socket (gunicorn's, on an HTTP/1.1 response, which gunicorn
        sends in chunks), the reader writes the live changes to it itself.
        """
        with self._lock:
            closed = self._closed
            admitted = not closed and self._clients < self.max_clients
            if admitted:
                self._clients += 1
                if self._reader is None:
                    self._reader = threading.Thread(
                        target=self._read, name=f"stream-reader-{self.store}", daemon=True
                    )
                    self._reader.start()
        if closed:  # a stopping worker: come back as soon as the restarted one is up
            yield f"retry: {RETRY_MS}\n\n"
            return
        if not admitted:
            yield f"retry: {BUSY_RETRY_MS}\n: busy\n\n"
            return
        try:
            yield f"retry: {RETRY_MS}\n\n"
            changes, last = self.catch_up(last_id)
            if changes:
                yield "".join(c.encode() for c in changes)
            if sock is not None:
                self._serve_direct(sock, last)
                return
            while True:
                text, last, closed = self._wait(last)
                if closed:
                    return
                yield text or ": ping\n\n"
        finally:
            with self._lock:
                self._clients -= 1

    def catch_up(self, last_id: int | None) -> tuple[list[Change], int]:
        """Return what a client starting after `last_id` must see first, and its new last id.

        A fresh client (None), or one whose id is beyond the log (the database was reset),
        gets a snapshot: every item's current level, each with the newest event id.
        """
        with self._connect() as conn:
            if last_id is not None and last_id <= self._max_id(conn):
                changes = self._since(conn, last_id)
                return changes, changes[-1].id if changes else last_id
            return self._snapshot(conn)

    def close(self) -> None:
        """End every stream of this process and refuse new ones (worker shutdown)."""
        with self._lock:
            self._closed = True
            self._news = (self._head, self._head, "", True)
            direct = list(self._direct)
        self._release_waiters()
        for client in direct:
            client.wake.set()
        self._wake.set()

    def wake(self) -> None:
        """Read the log now rather than at the next tick: this process committed a change."""
        self._wake.set()

    def _wait(self, last: int) -> tuple[str, int, bool]:
        """Wait up to one ping interval for rows after `last`; return their text."""
        waiter = _thread.allocate_lock()
        waiter.acquire()
        with self._lock:
            parked = not self._closed and self._head <= last
            if parked:
                self._waiters.append(waiter)
        if parked and not waiter.acquire(timeout=self.ping):
            with self._lock:
                if waiter in self._waiters:  # else the reader released it just now
                    self._waiters.remove(waiter)
        head, before, text, closed = self._news
        if closed:
            return "", last, True
        if head <= last:
            return "", last, False
        if before == last:
            return text, head, False
        text, last = self._gap(last)
        return text, last, False

    def _gap(self, last: int) -> tuple[str, int]:
        """Return the text of every row after `last`, from the buffer or else the database."""
        with self._lock:
            if self._head <= last:
                return "", last
            if last >= self._floor:
                # Newest first, only as far back as this client has seen.
                texts = []
                for id_, entry in reversed(self._buffer):
                    if id_ <= last:
                        break
                    texts.append(entry)
                return "".join(reversed(texts)), self._head
        # Fell behind the ring buffer (or the reader restarted): read the gap instead.
        with self._connect() as conn:
            changes = self._since(conn, last)
        return "".join(c.encode() for c in changes), changes[-1].id if changes else last

    def _serve_direct(self, sock: socket.socket, last: int) -> None:
        """Hand this client's socket to the reader; write only what the reader could not."""
        client = _Direct(sock, last)
        with self._lock:
            if self._closed:
                return
            self._direct.append(client)
        client.wake.set()  # first, the rows that came between the catch-up and now
        try:
            while True:
                woken = client.wake.wait(self.ping)
                client.wake.clear()
                with client.lock:
                    if client.dead:
                        return
                    frame, client.rest = client.rest, b""
                    if self._closed:
                        # Finish a half-sent frame, so the response ends on a whole chunk.
                        with contextlib.suppress(OSError):
                            sock.sendall(frame)
                        return
                    text, client.last = self._gap(client.last)
                    if text:
                        frame += _chunk(text)
                    elif not woken and not frame:
                        frame = _chunk(": ping\n\n")
                    if frame:
                        try:
                            sock.sendall(frame)
                        except OSError:
                            return
        finally:
            with self._lock:
                self._direct.remove(client)

    def _read(self) -> None:
        """Follow the log while this process has clients, then stop."""
        conn: Connection | None = None
        try:
            while True:
                with self._lock:
                    if self._closed or self._clients == 0:
                        self._reader = None
                        return
                try:
                    if conn is None:
                        conn = self._connect()
                        with self._lock:
                            self._buffer.clear()
                            self._head = self._floor = self._max_id(conn)
                            self._news = (self._head, self._head, "", False)
                        self._release_waiters()
                    rows = self._since(conn, self._head, limit=True)
                except SQLAlchemyError:
                    log.exception("stream: reading stock_event failed; retrying")
                    if conn is not None:
                        conn.close()
                        conn = None
                    rows = []
                if rows:
                    texts = [change.encode() for change in rows]
                    with self._lock:
                        for change, text in zip(rows, texts, strict=True):
                            if len(self._buffer) == self._buffer.maxlen:
                                self._floor = self._buffer[0][0]
                            self._buffer.append((change.id, text))
                        before, self._head = self._head, rows[-1].id
                        self._news = (self._head, before, "".join(texts), False)
                        direct = list(self._direct)
                    self._release_waiters()
                    _push(direct, before, self._head, _chunk("".join(texts)))
                if conn is None:
                    time.sleep(1.0)
                elif len(rows) < BATCH:
                    # Cleared after waking and before the next read: a commit that lands
                    # during that read sets it again, so it is never lost.
                    self._wake.wait(self.tick)
                    self._wake.clear()
        finally:
            if conn is not None:
                conn.close()

    def _release_waiters(self) -> None:
        # Released outside the lock, so a woken client never waits for the reader.
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()

    def _connect(self) -> Connection:
        # AUTOCOMMIT skips the app's BEGIN IMMEDIATE, so polling never takes the write lock.
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _max_id(self, conn: Connection) -> int:
        return (
            conn.scalar(select(func.max(StockEvent.id)).where(StockEvent.store == self.store)) or 0
        )

    def _since(self, conn: Connection, last: int, limit: bool = False) -> list[Change]:
        stmt = _SINCE_BATCH if limit else _SINCE
        return [Change(*row) for row in conn.execute(stmt, {"store": self.store, "last": last})]

    def _snapshot(self, conn: Connection) -> tuple[list[Change], int]:
        # One statement reads the levels and the newest id from one consistent view.
        newest = (
            select(func.coalesce(func.max(StockEvent.id), 0))
            .where(StockEvent.store == self.store)
            .scalar_subquery()
        )
        rows = conn.execute(
            select(newest, Stock.sku, Stock.store, Stock.on_hand, Stock.reserved)
            .where(Stock.store == self.store)
            .order_by(Stock.sku)
        ).all()
        if not rows:
            return [], self._max_id(conn)
        return [Change(*row) for row in rows], rows[0][0]


class _Direct:
    """A client whose socket the reader writes to: one send per client instead of a thread."""

    def __init__(self, sock: socket.socket, last: int) -> None:
        self.sock = sock
        self.last = last  # the newest row written to it
        self.lock = threading.Lock()  # whoever writes holds it: the reader or the client
        self.wake = threading.Event()  # the client's own thread has something to write
        self.rest = b""  # what a full socket buffer left of the reader's last frame
        self.dead = False


def _chunk(text: str) -> bytes:
    # gunicorn sends an HTTP/1.1 response with no length in chunks; so does the reader.
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


def _push(clients: list[_Direct], before: int, head: int, frame: bytes) -> None:
    """Write one read's rows to every client that had everything before them."""
    for client in clients:
        # A client busy writing, behind, or with a frame half sent is its own thread's job:
        # the reader never waits on one slow phone or kiosk.
        if not client.lock.acquire(blocking=False):
            client.wake.set()
            continue
        try:
            if client.last != before or client.rest or client.dead:
                client.wake.set()
                continue
            try:
                sent = client.sock.send(frame, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except Exception:
                # Gone, or a socket that refuses: drop this client, never the reader.
                client.dead = True
                client.wake.set()
                continue
            client.last = head
            if sent < len(frame):
                client.rest = frame[sent:]
                client.wake.set()
        finally:
            client.lock.release()


def init_app(app: Flask) -> None:
    """Give the app its stream broker, reading the app's database for its store."""
    app.config.setdefault("STREAM_PING_SECONDS", 15)
    app.config.setdefault("STREAM_TICK_SECONDS", 0.02)
    # None: gunicorn.conf.py sizes it from the worker's threads; 100 under `flask run`.
    app.config.setdefault("STREAM_MAX_CLIENTS", None)
    with app.app_context():
        engine = db.engine
    app.extensions["swagstore.stream"] = Broker(
        engine,
        app.config["STORE_ID"],
        tick=float(app.config["STREAM_TICK_SECONDS"]),
        ping=float(app.config["STREAM_PING_SECONDS"]),
        max_clients=int(app.config["STREAM_MAX_CLIENTS"] or 100),
    )


def broker(app: Flask) -> Broker:
    """Return the app's stream broker."""
    return app.extensions["swagstore.stream"]  # type: ignore[no-any-return]


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    # The commit made the session's stock changes visible: this process's readers send
    # them now instead of at the next tick. A spare wake costs one indexed read.
    if session.info.pop(CHANGED, False):
        for each in list(_brokers):
            each.wake()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(CHANGED, None)


def close_all(*_: Any) -> None:
    """End every open stream in this process, so a stopping worker need not wait for them."""
    for each in list(_brokers):
        each.close()
