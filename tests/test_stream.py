"""The live stream: a stream in process, then /stream over HTTP from one and two workers."""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import threading
import time

import pytest
import requests
from sqlalchemy import select

from conftest import STORE, LiveServer, both_databases, make_product
from swagstore import inventory, stream
from swagstore.models import PaymentLink, StockEvent, db

DEADLINE = 30


def stream_ids(app) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(select(StockEvent.id).order_by(StockEvent.id)))


def take(app, sku: str = "tee-m", times: int = 1) -> None:
    with app.app_context():
        for _ in range(times):
            assert inventory.take(sku, STORE) is not None
        db.session.commit()


def parse(text: str) -> list[dict]:
    """Split SSE text into messages: {"id", "event", "data", "comments", "retry"}."""
    messages = []
    for block in text.split("\n\n"):
        if not block:
            continue
        message: dict = {"comments": []}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                message["comments"].append(value)
            elif field == "data":
                message["data"] = json.loads(value)
            elif field in ("id", "retry"):
                message[field] = int(value)
            else:
                message[field] = value
        messages.append(message)
    return messages


def next_data(messages, deadline: float = DEADLINE) -> list[dict]:
    """Pull from a follow() generator until it yields stock events; return them."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        events = [m for m in parse(next(messages)) if m.get("event") == "stock"]
        if events:
            return events
    raise AssertionError("no stock event within the deadline")


@pytest.fixture
def streams(app):
    """A process's streams on the test database with a short tick and ping."""
    with app.app_context():
        return stream.Streams(db.engine, STORE, tick=0.05, ping=0.5)


def test_change_encodes_the_contract_fields():
    text = stream.Change(7, "tee-m", STORE, on_hand=3, reserved=3).encode()
    assert text.startswith("id: 7\nevent: stock\ndata: ") and text.endswith("\n\n")
    assert parse(text) == [
        {
            "comments": [],
            "id": 7,
            "event": "stock",
            "data": {
                "sku": "tee-m",
                "store": STORE,
                "available": 0,
                "on_hand": 3,
                "reserved": 3,
                "sold_out": True,
            },
        }
    ]


@pytest.mark.parametrize(
    ("header", "expected"), [(None, None), ("", None), ("12", 12), (" 5 ", 5), ("x1", None)]
)
def test_parse_last_event_id(header, expected):
    assert stream.parse_last_event_id(header) == expected


@both_databases
def test_fresh_client_gets_a_snapshot_then_live_changes(app, streams):
    make_product(app, "tee-m", stock=5)
    make_product(app, "mug", stock=2)
    take(app, "mug")
    messages = streams.follow(None)
    assert parse(next(messages)) == [{"comments": [], "retry": stream.RETRY_MS}]
    snapshot = parse(next(messages))
    newest = stream_ids(app)[-1]
    assert [(m["id"], m["data"]["sku"], m["data"]["available"]) for m in snapshot] == [
        (newest, "mug", 1),
        (newest, "tee-m", 5),
    ]
    take(app, "tee-m", times=2)
    received = next_data(messages)
    while len(received) < 2:
        received += next_data(messages)
    assert [m["data"]["available"] for m in received] == [4, 3]
    assert [m["id"] for m in received] == stream_ids(app)[-2:]
    messages.close()


@both_databases
def test_resume_reads_every_missed_row_in_order(app, streams):
    make_product(app, "tee-m", stock=20)
    seen = stream_ids(app)[-1]
    take(app, "tee-m", times=3)
    with app.app_context():
        inventory.hold("tee-m", STORE)
        inventory.restock("tee-m", STORE, 4)
        db.session.commit()
    changes, last = streams.catch_up(seen)
    assert [c.id for c in changes] == stream_ids(app)[1:]
    assert [(c.on_hand, c.reserved) for c in changes] == [
        (19, 0),
        (18, 0),
        (17, 0),
        (17, 1),
        (21, 1),
    ]
    assert last == changes[-1].id
    assert streams.catch_up(last) == ([], last)


def test_resume_from_beyond_the_log_gets_a_snapshot(app, streams):
    make_product(app, "tee-m", stock=2)
    changes, last = streams.catch_up(10_000)
    assert [(c.sku, c.available) for c in changes] == [("tee-m", 2)]
    assert last == stream_ids(app)[-1]


def test_more_changes_than_one_read_takes_arrive_whole_and_in_order(app, streams):
    make_product(app, "tee-m", stock=800)
    messages = streams.follow(None)
    next(messages)
    start = parse(next(messages))[0]["id"]
    with app.app_context():  # one commit, so they all land between two of the stream's reads
        for _ in range(stream.BATCH + 100):
            assert inventory.take("tee-m", STORE) is not None
        db.session.commit()
    received: list[dict] = []
    while len(received) < stream.BATCH + 100:
        received += next_data(messages)
    assert [m["id"] for m in received] == [i for i in stream_ids(app) if i > start]
    assert received[-1]["data"]["available"] == 800 - stream.BATCH - 100
    messages.close()


def test_a_full_process_sends_clients_away_to_retry(app):
    make_product(app, "tee-m", stock=1)
    with app.app_context():
        one = stream.Streams(db.engine, STORE, tick=0.05, ping=0.5, max_clients=1)
    first = one.follow(None)
    next(first)
    assert list(one.follow(None)) == [f"retry: {stream.BUSY_RETRY_MS}\n: busy\n\n"]
    assert one.clients == 1
    first.close()
    assert one.clients == 0


def test_a_stream_reads_on_while_a_writer_holds_the_write_lock(app, streams, db_path):
    """Its polls never ask for SQLite's write lock, so they never wait behind a writer."""
    make_product(app, "tee-m", stock=5)
    take(app, "tee-m")
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # a long write transaction of another process
    began = time.monotonic()
    try:
        messages = streams.follow(None)
        assert parse(next(messages)) == [{"comments": [], "retry": stream.RETRY_MS}]
        assert [m["data"]["available"] for m in parse(next(messages))] == [4]
        assert next(messages) == ": ping\n\n"  # several polls later
    finally:
        blocker.rollback()
        blocker.close()
    # A poll that waited for the lock would wait out busy_timeout (10 s) first.
    assert time.monotonic() - began < 5
    messages.close()


def test_clients_at_different_points_each_get_exactly_their_missing_rows(app, streams):
    make_product(app, "tee-m", stock=10)
    ahead, behind = streams.follow(None), streams.follow(None)
    for messages in (ahead, behind):
        next(messages)
        next(messages)
    start = stream_ids(app)[-1]
    received: dict[str, list[dict]] = {"ahead": [], "behind": []}
    for _ in range(3):
        take(app, "tee-m")
        while len(received["ahead"]) < len([i for i in stream_ids(app) if i > start]):
            received["ahead"] += next_data(ahead)
    while len(received["behind"]) < 3:
        received["behind"] += next_data(behind)
    for got in received.values():
        assert [m["id"] for m in got] == [i for i in stream_ids(app) if i > start]
        assert [m["data"]["available"] for m in got] == [9, 8, 7]
    ahead.close()
    behind.close()


def test_close_ends_open_streams_and_sends_new_clients_back_soon(app, streams):
    make_product(app, "tee-m", stock=1)
    messages = streams.follow(None)
    next(messages)
    next(messages)
    assert streams.clients == 1
    streams.close()
    assert [m for m in messages if m != ": ping\n\n"] == []
    assert streams.clients == 0
    # A browser reaching a stopping worker is told to come back soon, not in 10 s.
    assert list(streams.follow(None)) == [f"retry: {stream.RETRY_MS}\n\n"]


class SSE:
    """A real HTTP client of /stream that reads one message at a time."""

    def __init__(self, server: LiveServer, last_id: int | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", "/stream", headers=headers)
        self.response = self.conn.getresponse()
        self.port = self.conn.sock.getsockname()[1]
        self.last_id = last_id

    def message(self) -> dict:
        lines = []
        while (line := self.response.readline().decode()) not in ("\n", ""):
            lines.append(line.removesuffix("\n"))
        if not lines:
            raise EOFError("the stream ended")
        (message,) = parse("\n".join(lines))
        self.last_id = message.get("id", self.last_id)
        return message

    def events_until(self, last_id: int) -> list[dict]:
        """Read stock events until the one with `last_id`."""
        events: list[dict] = []
        while self.last_id is None or self.last_id < last_id:
            message = self.message()
            if message.get("event") == "stock":
                events.append(message)
        return events

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def test_stream_over_http_has_the_headers_and_pings(app, app_config, server_env):
    make_product(app, "tee-m", stock=3)
    server = LiveServer({**server_env, "SWAGSTORE_STREAM_PING_SECONDS": "0.3"}).start()
    client = SSE(server)
    try:
        headers = client.response.headers
        assert client.response.status == 200
        assert headers["Content-Type"].startswith("text/event-stream")
        assert headers["Cache-Control"] == "no-cache"
        assert headers["X-Accel-Buffering"] == "no"
        assert client.message() == {"comments": [], "retry": stream.RETRY_MS}
        assert client.message()["data"]["available"] == 3
        assert client.message() == {"comments": ["ping"]}
    finally:
        client.close()
        server.stop()


@both_databases
def test_resume_over_http_loses_nothing_under_concurrent_sales(app, server_env):
    """Writers take stock in threads while a client keeps dropping and resuming."""
    make_product(app, "tee-m", stock=200)
    make_product(app, "mug", stock=200)
    # A dropped stream keeps its slot until the server's next write to it fails, so the
    # 15 quick reconnects need more than the default 8 slots of a 16-thread worker.
    live_server = LiveServer(server_env, threads=40).start()
    client = SSE(live_server)
    snapshot_id = client.events_until(stream_ids(app)[-1])[-1]["id"]
    done = threading.Event()

    def sell(sku: str) -> None:
        for _ in range(25):
            take(app, sku)
        done.set()

    writers = [threading.Thread(target=sell, args=(sku,)) for sku in ("tee-m", "mug", "mug")]
    for w in writers:
        w.start()
    received: list[dict] = []
    try:
        while not done.is_set() or len(received) < 3:
            received.append(client.events_until((client.last_id or 0) + 1)[-1])
            if len(received) % 5 == 0:  # drop the connection, as a flaky Wi-Fi would
                last = client.last_id
                client.close()
                client = SSE(live_server, last_id=last)
        for w in writers:
            w.join(DEADLINE)
        received += client.events_until(stream_ids(app)[-1])
    finally:
        client.close()
        live_server.stop()
    ids = [m["id"] for m in received]
    assert ids == [i for i in stream_ids(app) if i > snapshot_id]
    assert len(ids) == 75
    last = {m["data"]["sku"]: m["data"]["available"] for m in received}
    assert last == {"tee-m": 175, "mug": 150}


def test_a_full_process_sends_streams_away_and_still_answers_requests(app, server_env):
    make_product(app, "tee-m", stock=1)
    # The test's clients come from 127.0.0.1, the kiosk's own address, which is never
    # refused: here the kiosk is somewhere else.
    env = {
        **server_env,
        "SWAGSTORE_STREAM_MAX_CLIENTS": "2",
        "SWAGSTORE_KIOSK_ADDRESSES": "192.0.2.1",
    }
    server = LiveServer(env, threads=4).start()
    clients = [SSE(server) for _ in range(3)]
    try:
        assert [c.message().get("retry") for c in clients] == [
            stream.RETRY_MS,
            stream.RETRY_MS,
            stream.BUSY_RETRY_MS,
        ]
        assert requests.get(server.url + "/healthz", timeout=DEADLINE).status_code == 200
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_sigterm_ends_open_streams_without_waiting_out_the_grace_period(app, server_env):
    make_product(app, "tee-m", stock=1)
    server = LiveServer(server_env).start()
    clients = [SSE(server) for _ in range(3)]
    for client in clients:
        assert client.message()["retry"] == stream.RETRY_MS
        assert client.message()["data"]["available"] == 1
    stopping = threading.Thread(target=server.stop)
    began = time.monotonic()
    stopping.start()
    for client in clients:
        with pytest.raises((EOFError, http.client.IncompleteRead, ConnectionError)):
            while True:
                client.message()
        client.close()
    # Ended by the server at its next tick. Otherwise gunicorn would wait out its
    # graceful_timeout (10 s) for streams that never end, and honcho kill it after 5 s.
    assert time.monotonic() - began < 3
    stopping.join(DEADLINE)


def worker_serving(server: LiveServer, client_port: int) -> int:
    """Return the pid of the gunicorn worker holding this client's connection (from /proc)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if int(local, 16) == server.port and int(remote, 16) == client_port:
                inode = fields[9]
    assert inode is not None, "the server side of the connection is not in /proc/net/tcp"
    for pid in server.processes():
        fds = f"/proc/{pid}/fd"
        for fd in os.listdir(fds):
            try:
                if os.readlink(f"{fds}/{fd}") == f"socket:[{inode}]":
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


@pytest.mark.parametrize("sandbox_workers", [2])
def test_a_sale_through_one_worker_reaches_clients_of_every_worker(app, runner, sandbox):
    make_product(app, "tee-m", stock=5)
    synced = runner.invoke(args=["sync-stripe"])
    assert synced.exit_code == 0, synced.output
    with app.app_context():
        link_id = db.session.scalar(select(PaymentLink.id).where(PaymentLink.sku == "tee-m"))
    server = sandbox.server
    clients: list[SSE] = []
    try:
        by_worker: dict[int, list[SSE]] = {}
        while len(by_worker) < 2 or min(len(c) for c in by_worker.values()) < 2:
            assert len(clients) < 16, "every client landed on one worker"
            client = SSE(server)
            clients.append(client)
            client.events_until(stream_ids(app)[-1])  # served: its snapshot arrived
            by_worker.setdefault(worker_serving(server, client.port), []).append(client)
        # A phone pays on the hosted page; the webhook lands on one worker or the other.
        before = stream_ids(app)[-1]
        sandbox.pay(sandbox.open_session(link_id)["id"])
        received = [client.events_until(before + 1) for client in clients]
        (sale,) = [i for i in stream_ids(app) if i > before]
        assert all([(e["id"], e["data"]["available"]) for e in r] == [(sale, 4)] for r in received)
    finally:
        for client in clients:
            client.close()
