"""Events without a public URL: the poller's lease and cursor, its errors, and install ids."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select
from stripe_fixtures import make_event, make_session
from test_fulfilment_live import link_for_sale, pay_all

from conftest import STORE, both_databases, free_port, make_product
from swagstore import create_app, events, models, tasks, worker
from swagstore.cli import init_db
from swagstore.models import PaymentLink, Sale, Setting, StripeEvent, db

# Stripe's own words for a restricted key without the permission (its 403 body).
RESTRICTED = (
    "The provided key 'rk_test_****abcd' does not have the required permissions for this "
    "endpoint on account 'acct_1'. Having the 'rak_event_read' permission would allow this "
    "request to continue."
)


# Install ids and idempotency keys ---------------------------------------------------------


def make_booth(path: Path, store: str = STORE):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
            "SANDBOX_DATABASE": str(path.with_suffix(".sandbox")),
            "STORE_ID": store,
        }
    )
    with app.app_context():
        init_db()
    return app


def install_id_of(app) -> str:
    with app.app_context():
        return models.install_id()


def test_each_database_gets_its_own_install_id_once(tmp_path):
    north, south = make_booth(tmp_path / "north.sqlite"), make_booth(tmp_path / "south.sqlite")
    first = install_id_of(north)

    with north.app_context():
        init_db()  # a rerun keeps it
    assert install_id_of(north) == first
    assert install_id_of(south) != first
    assert len(first) == 16 and int(first, 16) >= 0

    with north.app_context():
        db.engine.dispose()
    (tmp_path / "north.sqlite").unlink()
    reset = make_booth(tmp_path / "north.sqlite")
    assert install_id_of(reset) not in (first, install_id_of(south))


def test_every_key_names_the_install_and_the_store(app):
    with app.app_context():
        install = models.install_id()
        assert models.idempotency_key("north", "task", 7) == f"swagstore-{install}-north-task-7"
        sale = Sale(sku="tee-m", store="south", currency="usd", kind="card", status="pending")
        db.session.add(sale)
        db.session.flush()
        task = tasks.enqueue("refund", sale_id=sale.id)
        db.session.commit()
        claimed = tasks.Claimed(task.id, "refund", task.args, sale.id, None, 1)
        # The sale's store, not the booth running the task: any worker sends the same key.
        assert tasks.idempotency_key(claimed) == f"swagstore-{install}-south-task-{task.id}"


# The lease: one poller per database -------------------------------------------------------


def test_the_lease_keeps_a_second_poller_out_until_it_lapses(app):
    here = events.poller_id()
    with app.app_context():
        assert events.take_lease(here, seconds=0.6)
        assert events.take_lease(here, seconds=0.6)  # its own: renewed
        other = f"{here.rsplit(':', 2)[0]}:{os.getpid()}:other"
        assert not events.take_lease(other, seconds=0.6)
        time.sleep(0.7)
        assert events.take_lease(other, seconds=0.6)
        assert not events.take_lease(here, seconds=0.6)


def test_a_killed_pollers_lease_is_taken_over_at_once(app):
    proc = __import__("subprocess").Popen(["true"])
    proc.wait()  # a pid on this host that is gone
    host = events.poller_id().rsplit(":", 2)[0]
    with app.app_context():
        assert events.take_lease(f"{host}:{proc.pid}:dead", seconds=60)
        assert events.take_lease(events.poller_id(), seconds=60)


@both_databases
def test_of_many_pollers_racing_for_the_lease_exactly_one_wins(app):
    won: list[str] = []
    start = threading.Barrier(12)

    def poller(n: int) -> None:
        owner = f"elsewhere:{n}:x"  # another host: only its expiry frees it
        with app.app_context():
            start.wait()
            if events.take_lease(owner):
                won.append(owner)
            db.session.remove()

    threads = [threading.Thread(target=poller, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1
    with app.app_context():
        lease = json.loads(db.session.get(Setting, events.LEASE_KEY).value)
        assert lease["owner"] == won[0]


# The live sandbox server neither delivers nor polls: only the test's own poller brings events.
QUIET = {"SWAGSTORE_SANDBOX_DELIVER": "false", "SWAGSTORE_EVENT_SOURCE": "webhook"}


# Polling the sandbox (no deliveries) ------------------------------------------------------


def test_event_source_auto_polls_without_a_webhook_secret(app):
    config = dict(app.config)
    assert events.source({**config, "SANDBOX": False, "STRIPE_WEBHOOK_SECRET": None}) == "poll"
    assert events.source({**config, "SANDBOX": False, "STRIPE_WEBHOOK_SECRET": "whsec_1"}) == (
        "webhook"
    )
    assert events.source({**config, "SANDBOX": True, "SANDBOX_DELIVER": False}) == "poll"
    assert events.source({**config, "SANDBOX": True, "SANDBOX_DELIVER": True}) == "webhook"
    assert events.source({**config, "EVENT_SOURCE": "poll"}) == "poll"
    app.config["SANDBOX_DELIVER"] = False
    assert any(isinstance(job, events.Poller) for job in worker.jobs(app))
    app.config["SANDBOX_DELIVER"] = True
    assert not any(isinstance(job, events.Poller) for job in worker.jobs(app))


@pytest.mark.parametrize("sandbox_env", [QUIET])
def test_a_new_database_skips_older_sales_then_resumes_from_its_cursor(app, runner, sandbox):
    # Units to spare: five sales would meet the link's limit, and Stripe's own
    # payment_link.updated would be a fourth event.
    link = link_for_sale(app, runner, stock=8)
    pay_all(sandbox, [sandbox.open_session(link) for _ in range(2)])
    time.sleep(1.1)
    with app.app_context():
        # As if this database was made now: the two sales were made before it existed.
        db.session.get(Setting, events.SINCE_KEY).value = str(int(time.time()))
        db.session.commit()

    before = runner.invoke(args=["poll-events", "--once"])
    pay_all(sandbox, [sandbox.open_session(link) for _ in range(3)])
    after = runner.invoke(args=["poll-events", "--once"])
    again = runner.invoke(args=["poll-events", "--once"])

    assert (before.output, after.output) == ("Events: none.\n", "Events: 3 applied.\n")
    assert again.output == "Events: none.\n"
    with app.app_context():
        assert len(db.session.scalars(select(Sale.id)).all()) == 3


@pytest.mark.parametrize("sandbox_env", [QUIET])
def test_the_poller_job_reconciles_on_start_and_survives_a_500(app, runner, sandbox, caplog):
    link = link_for_sale(app, runner, stock=5)
    pay_all(sandbox, [sandbox.open_session(link) for _ in range(2)])
    with app.app_context():
        poller = events.Poller(0.0, lambda: __import__("swagstore").payments.gateway())
        # First call: reconcile finds both sales, then the poll sees their events as done,
        # and applies sync-stripe's setting of the link's limit (a payment_link.updated).
        assert poller() == 3
        pay_all(sandbox, [sandbox.open_session(link)])
        # More 500s than the SDK retries: one line, backed off, no exception.
        sandbox.fault("/v1/events", count=5)
        with caplog.at_level(logging.ERROR, logger="swagstore.events"):
            assert poller() == 0
        assert [r.getMessage() for r in caplog.records] == [
            "poller: Stripe unreachable or failing (500): Sandbox fault: internal error.; "
            "retrying in 0 s"
        ]
        assert all(r.exc_info is None for r in caplog.records)
        sandbox.api("DELETE", "/_control/faults")
        poller.next_at = 0
        assert poller() == 1
        assert len(db.session.scalars(select(Sale.id)).all()) == 3
        # Both reconciled sales' real events came too, and changed nothing.
        assert len(db.session.scalars(select(StripeEvent.id)).all()) == 6
        db.session.rollback()


@pytest.mark.parametrize("sandbox_env", [QUIET])
def test_a_500_is_retried_by_poll_events(app, runner, sandbox):
    link = link_for_sale(app, runner, stock=5)
    pay_all(sandbox, [sandbox.open_session(link)])
    sandbox.fault("/v1/events", count=1)

    result = runner.invoke(args=["poll-events", "--once"])

    # The sale, and sync-stripe's setting of the link's limit (a payment_link.updated).
    assert (result.exit_code, result.output) == (0, "Events: 2 applied.\n")


# Refusals: one line, no traceback ---------------------------------------------------------


class Refusing(BaseHTTPRequestHandler):
    """An HTTP double of Stripe that refuses everything with one status and body."""

    status = 403
    body: dict = {}

    def do_GET(self) -> None:
        payload = json.dumps(self.body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


REFUSALS = {
    403: {"error": {"type": "invalid_request_error", "message": RESTRICTED}},
    400: {
        "error": {
            "type": "invalid_request_error",
            "code": "parameter_unknown",
            "param": "types",
            "message": "Received unknown parameter: types",
        }
    },
    401: {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}},
}


@pytest.fixture(params=sorted(REFUSALS))
def refusing_stripe(request, tmp_path):
    handler = type(
        "Handler", (Refusing,), {"status": request.param, "body": REFUSALS[request.param]}
    )
    with booth_against(handler, tmp_path) as app:
        yield request.param, app


@contextlib.contextmanager
def booth_against(handler: type[BaseHTTPRequestHandler], tmp_path: Path) -> Iterator:
    """Run an HTTP double of Stripe and a booth app (item x, link plink_1) that calls it."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'booth.sqlite'}",
            "STRIPE_SECRET_KEY": "rk_test_abcd",
            "STRIPE_API_BASE": f"http://127.0.0.1:{server.server_port}",
            "STORE_ID": STORE,
        }
    )
    with app.app_context():
        init_db()
    make_product(app, "x", stock=1)
    with app.app_context():
        db.session.add(PaymentLink(id="plink_1", sku="x", store=STORE, url="u", price_id="p"))
        db.session.commit()
    yield app
    server.shutdown()
    server.server_close()
    with app.app_context():
        db.engine.dispose()


EXPECTED = {
    403: "Stripe refused the key (403): the restricted key lacks the permission rak_event_read",
    400: "Stripe refused the request (400 parameter_unknown): Received unknown parameter: types",
    401: "Stripe refused the key (401): check STRIPE_SECRET_KEY",
}


def test_a_refusal_ends_poll_events_and_reconcile_with_one_line(refusing_stripe):
    status, app = refusing_stripe
    runner = app.test_cli_runner()

    for args in (["poll-events", "--once"], ["poll-events"], ["reconcile", "--since", "1h"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: " + EXPECTED[status]), lines


def test_a_refusal_in_the_worker_job_is_one_logged_line(refusing_stripe, caplog):
    status, app = refusing_stripe
    with app.app_context(), caplog.at_level(logging.ERROR, logger="swagstore.events"):
        poller = events.Poller(0.0, __import__("swagstore").payments.gateway)
        assert poller() == 0
        poller.next_at = 0
        assert poller() == 0  # asked again: the same refusal is not logged twice
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert caplog.records[0].getMessage().startswith("poller: " + EXPECTED[status])


class OddEvents(Refusing):
    """A Stripe double whose event list holds one event of a shape no handler can trust."""

    status = 200

    def do_GET(self) -> None:
        if "ending_before" in self.path or "starting_after" in self.path:
            self.body = {"object": "list", "data": [], "has_more": False}
        else:
            odd = make_event(make_session("x", STORE))
            odd["data"]["object"]["amount_total"] = "lots"
            good = make_event(make_session("x", STORE))
            # Newest first, as Stripe lists them: the odd event came first.
            self.body = {"object": "list", "data": [good, odd], "has_more": False}
        super().do_GET()


def test_a_malformed_polled_event_is_logged_and_passed_and_the_next_one_applied(tmp_path, caplog):
    with booth_against(OddEvents, tmp_path) as app:
        runner = app.test_cli_runner()
        with caplog.at_level(logging.ERROR, logger="swagstore.events"):
            first = runner.invoke(args=["poll-events", "--once"])
        again = runner.invoke(args=["poll-events", "--once"])
        with app.app_context():
            sales = db.session.scalars(select(Sale.sku)).all()

    assert (first.exit_code, first.output) == (0, "Events: 1 applied, 1 malformed.\n")
    assert again.output == "Events: none.\n"  # the cursor moved past both
    assert sales == ["x"]
    (logged,) = [r.getMessage() for r in caplog.records]
    assert "skipped, malformed: data.object.amount_total must be a whole number" in logged
