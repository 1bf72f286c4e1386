"""Signed events of the wrong shape, through the proxy: 400 with a reason, no change.

A valid signature proves who sent an event, not that its fields are sane. Each malformed
event below is signed with the store's own secret, so only the shape check stands between
it and the database; the staff pages and `flask report` must still work after all of them.
"""

from __future__ import annotations

import json

import pytest
import requests
from public_server import PublicServer
from sqlalchemy import inspect, text
from stripe_fixtures import WEBHOOK_SECRET, make_event, make_session, sign

from conftest import ADMIN_PASSWORD, STORE, log_in_http, make_product
from swagstore import worker
from swagstore.models import db


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }


@pytest.fixture
def public(app, server_env, tmp_path):
    """The booth as `make public` runs it: Stripe's events come in through nginx."""
    server = PublicServer(server_env, tmp_path / "nginx").start()
    yield server
    server.stop()


def session_event(**fields) -> dict:
    session = make_session()
    session.update(fields)
    return make_event(session)


def metadata_event(**metadata) -> dict:
    return make_event(make_session(**metadata))


MALFORMED = {
    "a JSON array as body": lambda: [make_event(make_session())],
    "metadata a list": lambda: session_event(metadata=["sku", "tee-m", "store", "booth"]),
    "quantity -5": lambda: metadata_event(quantity="-5"),
    "quantity abc": lambda: metadata_event(quantity="abc"),
    "quantity 1e3": lambda: metadata_event(quantity="1e3"),
    "quantity the number 1e3": lambda: metadata_event(quantity=1e3),
    "amount_total 10^30": lambda: session_event(amount_total=10**30),
    "amount_total lots": lambda: session_event(amount_total="lots"),
}


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every table: proof that a refused event changed nothing.

    Except the worker's heartbeat, which it writes every few seconds whatever comes in.
    """
    beat = worker.heartbeat_key(STORE)
    with app.app_context():
        names = inspect(db.engine).get_table_names()
        rows = {n: db.session.execute(text(f"SELECT * FROM {n} ORDER BY 1")).all() for n in names}
        db.session.rollback()
    rows["setting"] = [row for row in rows["setting"] if row[0] != beat]
    return rows


def post(server, body: bytes) -> requests.Response:
    return requests.post(
        server.url + "/stripe/webhook",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
        timeout=60,
    )


def test_every_malformed_signed_event_is_400_and_changes_nothing(app, public, runner):
    make_product(app, stock=5)
    before = snapshot(app)

    for name, build in MALFORMED.items():
        response = post(public, json.dumps(build()).encode())
        assert response.status_code == 400, (name, response.status_code, response.text)
        assert response.json()["error"].startswith("malformed event"), name
        assert snapshot(app) == before, name
    not_json = post(public, b"{lots")
    assert (not_json.status_code, snapshot(app)) == (400, before)

    # A bad Last-Event-ID is a fresh client: it gets the snapshot, not an error.
    for last_id in ("abc", "-5", "1e3", "9" * 30):
        with requests.get(
            public.url + "/stream", headers={"Last-Event-ID": last_id}, stream=True, timeout=60
        ) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines(decode_unicode=True)
            data = next(line for line in lines if line.startswith("data: "))
            assert json.loads(data[6:])["available"] == 5, last_id

    # The staff pages and the report read every row: all still fine.
    http, _ = log_in_http(public.url)
    for page in ("/admin", "/admin/sales", "/admin/report", "/admin/sales.csv", "/admin/tasks"):
        assert http.get(public.url + page, timeout=30).status_code == 200, page
    result = runner.invoke(args=["report"])
    assert result.exit_code == 0, result.output
    # And a sound event is still applied.
    good = post(public, json.dumps(make_event(make_session())).encode())
    assert (good.status_code, good.json()["outcome"]) == (200, "applied")
