"""Fair shares of the live stream, and a bad Last-Event-ID, without HTTP.

Each process streams to at most STREAM_MAX_CLIENTS strangers and STREAM_MAX_PER_CLIENT
from one address; the booth's own kiosk is never refused. The same over a running server
behind the proxy, with 200 strangers: tests/test_public.py.
"""

from __future__ import annotations

import pytest

from conftest import STORE, make_product
from swagstore import stream
from swagstore.models import db

BUSY = f"retry: {stream.BUSY_RETRY_MS}\n: busy\n\n"
PER_ADDRESS = f"retry: {stream.BUSY_RETRY_MS}\n: busy: too many streams from your address\n\n"


@pytest.fixture
def streams(app):
    make_product(app, "tee-m", stock=3)
    with app.app_context():
        yield stream.Streams(
            db.engine, STORE, tick=0.05, ping=0.5, max_clients=3, max_per_client=2
        )


def opened(streams, client: str, kiosk: bool = False):
    messages = streams.follow(None, client, kiosk=kiosk)
    assert next(messages) == f"retry: {stream.RETRY_MS}\n\n"
    return messages


def test_one_address_gets_at_most_its_share(streams):
    mine = [opened(streams, "192.0.2.7") for _ in range(2)]
    assert list(streams.follow(None, "192.0.2.7")) == [PER_ADDRESS]
    other = opened(streams, "192.0.2.8")  # another address still gets in
    mine[0].close()
    again = opened(streams, "192.0.2.7")  # a closed stream frees its place
    assert streams.clients == 3
    for messages in (*mine, other, again):
        messages.close()
    assert streams.clients == 0


def test_the_kiosk_is_never_refused_and_takes_no_strangers_place(streams):
    strangers = [opened(streams, f"192.0.2.{n}") for n in range(3)]
    assert list(streams.follow(None, "192.0.2.99")) == [BUSY]
    kiosks = [opened(streams, "127.0.0.1", kiosk=True) for _ in range(5)]
    assert '"available": 3' in next(kiosks[-1])  # its snapshot, like any stream
    assert list(streams.follow(None, "192.0.2.99")) == [BUSY]
    strangers[0].close()
    assert next(streams.follow(None, "192.0.2.99")) == f"retry: {stream.RETRY_MS}\n\n"
    for messages in (*strangers, *kiosks):
        messages.close()


@pytest.mark.parametrize(
    "header",
    ["abc", "-5", "1e3", "9" * 30, "١٢٣", "12abc", "0x10", " ", "9" * 19],
)
def test_a_bad_last_event_id_starts_from_a_snapshot(streams, header):
    assert stream.parse_last_event_id(header) is None
    messages = streams.follow(stream.parse_last_event_id(header), "192.0.2.7")
    next(messages)
    assert '"available": 3' in next(messages)  # every item's level, fresh
    messages.close()
