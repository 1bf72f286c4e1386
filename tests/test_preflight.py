"""`flask --app swagstore check`: good and broken booths, each FAIL with its fix.

A "booth" here is an app with a test key whose STRIPE_API_BASE is a running sandbox server
(the Stripe account), as on booth day with a real key; webhook endpoints are registered on
the standalone sandbox. What the sandbox cannot do (a restricted key's 403, a skewed
clock) comes from a small HTTP double speaking Stripe's error shape, reached through the
real SDK.
"""

from __future__ import annotations

import email.utils
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
from sandbox_account import SandboxAccount
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from conftest import STORE, free_port, make_product
from swagstore import create_app, fulfilment, inventory, preflight
from swagstore.models import db
from swagstore.preflight import access, delivery, laptop

KEY = "sk_test_booth"


@pytest.fixture
def sandbox_env():
    # Nothing but the test moves a link: a unit taken stays "link on at zero" until sync.
    return {"SWAGSTORE_TASK_THREAD": "false", "SWAGSTORE_WORKER_TASKS": "false"}


@pytest.fixture
def booth(app, app_config, sandbox) -> Iterator:
    """An app with a key, on `app`'s database, whose Stripe is the running sandbox."""
    keyed = create_app(
        {**app_config, "STRIPE_SECRET_KEY": KEY, "STRIPE_API_BASE": sandbox.api_base}
    )
    yield keyed
    with keyed.app_context():
        db.engine.dispose()


def check(app, *args: str):
    """Run `flask check`; it answers in lines and an exit status, never a traceback."""
    result = app.test_cli_runner().invoke(args=["check", *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def line(output: str, name: str) -> str:
    """Return the output line of one check."""
    (found,) = [row for row in output.splitlines() if row[6:].startswith(f"{name} ")]
    return found


def stock_up(booth) -> None:
    make_product(booth, "tee-m", stock=2, price=2500)
    make_product(booth, "mug", stock=3, price=1800, currency="eur")
    make_product(booth, "pin", stock=5, price=50)
    synced = booth.test_cli_runner().invoke(args=["sync-stripe"])
    assert synced.exit_code == 0, synced.output


def test_a_good_booth_passes_every_check(booth):
    stock_up(booth)
    result = check(booth, "--expect", "test")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = [row[6:].split("  ")[0].strip() for row in lines[:-1]]
    assert names == [
        "key",
        "database",
        "disk",
        "stripe",
        "permissions",
        "clock",
        "events",
        "public url",
        "prices",
        "synced",
        "links",
    ]
    assert all(row.startswith("OK ") for row in lines[:-1]), result.output
    assert lines[-1] == "All 11 checks passed."
    assert "test secret key (sk_test_…) against http://127.0.0.1:" in line(result.output, "key")
    assert KEY not in result.output  # never the key itself
    assert "polling Stripe's /v1/events" in line(result.output, "events")
    assert "not needed" in line(result.output, "public url")
    assert "cheapest pin at $0.50" in line(result.output, "prices")
    assert "3 links on, 0 off" in line(result.output, "links")


def test_no_key_fails_and_names_the_fix(app, runner):
    make_product(app, "tee-m", stock=2)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    result = check(app)
    assert result.exit_code == 1
    assert line(result.output, "key") == (
        "FAIL  key             no STRIPE_SECRET_KEY: the store runs as its offline sandbox and "
        "takes no money. Fix: put the booth's restricted key (rk_live_…) in instance/config.py "
        "as STRIPE_SECRET_KEY (or export SWAGSTORE_STRIPE_SECRET_KEY) (README, Running the "
        "booth), or run `check --expect sandbox` for a rehearsal"
    )
    assert result.output.splitlines()[-1] == "1 of 11 checks failed: key."
    # A rehearsal says what it expects: then no key is right.
    rehearsal = check(app, "--expect", "sandbox")
    assert rehearsal.exit_code == 0, rehearsal.output
    assert "the offline sandbox, as expected" in line(rehearsal.output, "key")


def test_an_unreachable_sandbox_fails_and_the_checks_needing_it_wait(app, app_config):
    make_product(app, "tee-m", stock=2)
    port = free_port()  # nothing listens there
    keyed = create_app(
        {**app_config, "STRIPE_SECRET_KEY": KEY, "STRIPE_API_BASE": f"http://127.0.0.1:{port}"}
    )
    try:
        result = check(keyed)
    finally:
        with keyed.app_context():
            db.engine.dispose()
    assert result.exit_code == 1
    stripe = line(result.output, "stripe")
    assert stripe.startswith(
        f"FAIL  stripe          no answer from http://127.0.0.1:{port} (Connection refused)."
    )
    assert "Fix: check the network (conference Wi-Fi, a captive portal) and STRIPE_API_BASE" in (
        stripe
    )
    assert line(result.output, "database").startswith("OK ")
    assert line(result.output, "prices").startswith("OK ")
    assert (
        "Not checked until the failures above are fixed: permissions, clock, synced, links."
        in result.output
    )
    assert result.output.splitlines()[-1] == "1 of 7 checks failed: stripe."
    # One check alone runs what it needs first, and shows it when that failed.
    links = check(keyed, "--only", "links")
    assert links.exit_code == 1
    assert [row[:20] for row in links.output.splitlines()[:1]] == ["FAIL  stripe        "]
    assert "Not checked until the failures above are fixed: links." in links.output


def test_check_only_the_key_asks_nothing_of_stripe(app, app_config):
    # make run asks this before it starts the booth: no network, no database needed.
    keyed = create_app(
        {
            **app_config,
            "STRIPE_SECRET_KEY": KEY,
            "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        }
    )
    try:
        result = check(keyed, "--only", "key")
    finally:
        with keyed.app_context():
            db.engine.dispose()
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"OK    key             test secret key (sk_test_…) against "
        f"{keyed.config['STRIPE_API_BASE']}: no real money moves",
        "Passed.",
    ]
    assert check(app, "--only", "key").exit_code == 1


def test_a_price_under_stripes_minimum_fails_naming_item_and_minimum(booth):
    stock_up(booth)
    # Loaded around load-catalog (which refuses them): a database from before that rule.
    make_product(booth, "button", stock=5, price=30)
    make_product(booth, "sticker-jp", stock=5, price=30, currency="jpy")
    result = check(booth)
    assert result.exit_code == 1
    assert line(result.output, "prices") == (
        "FAIL  prices          Stripe would refuse to charge button ($0.30 is under Stripe's "
        "minimum charge of $0.50); sticker-jp (¥30 is under Stripe's minimum charge of ¥50). "
        "Fix: fix the price in the catalog and run load-catalog (a free "
        "item is a giveaway, which staff record on /admin)"
    )


def test_an_unsynced_item_fails_until_sync_stripe(booth):
    stock_up(booth)
    make_product(booth, "hoodie", stock=4, price=5500)
    with booth.app_context():
        from swagstore.models import Product

        db.session.get(Product, "mug").price = 2000  # changed since the sync
        db.session.commit()
    result = check(booth)
    assert result.exit_code == 1
    assert line(result.output, "synced") == (
        "FAIL  synced          not in line with Stripe: hoodie: no payment link yet; mug: its "
        "price changed since the last sync. Fix: run `flask --app swagstore sync-stripe`"
    )
    assert booth.test_cli_runner().invoke(args=["sync-stripe"]).exit_code == 0
    assert check(booth).exit_code == 0


def test_a_link_on_at_zero_stock_fails_until_it_is_switched(booth):
    stock_up(booth)
    with booth.app_context():
        assert inventory.take("tee-m", STORE, 2, ref="two cash sales") is not None
        db.session.commit()
    result = check(booth)
    assert result.exit_code == 1
    assert line(result.output, "links") == (
        "FAIL  links           tee-m: link on at 0 available (a visitor pays for nothing). "
        "Fix: the worker switches links within seconds while `make run` runs; if this stays, "
        "run `flask --app swagstore sync-stripe`"
    )
    assert result.output.splitlines()[-1] == "1 of 11 checks failed: links."
    assert booth.test_cli_runner().invoke(args=["sync-stripe"]).exit_code == 0
    fixed = check(booth)
    assert fixed.exit_code == 0, fixed.output
    assert "2 links on, 1 off" in line(fixed.output, "links")


def test_a_link_whose_limit_disagrees_with_stock_fails_until_realigned(booth):
    stock_up(booth)
    with booth.app_context():
        # A cash sale whose link task has not run: Stripe would still let 5 phones pay.
        assert inventory.take("pin", STORE, 1, ref="a cash sale") is not None
        db.session.commit()
    result = check(booth)
    assert result.exit_code == 1
    assert line(result.output, "links").startswith(
        "FAIL  links           pin: link's limit lets 5 more sell (0 of 5 completed), "
        "4 available. Fix: "
    )
    assert booth.test_cli_runner().invoke(args=["sync-stripe"]).exit_code == 0
    fixed = check(booth)
    assert fixed.exit_code == 0, fixed.output
    assert "3 links on, 0 off" in line(fixed.output, "links")


# What the sandbox cannot do (a restricted key's 403, a skewed clock): a Stripe double ---------


class SkewedClock(WSGIRequestHandler):
    """Stamps each answer's Date header with the double's clock, `skew` seconds behind."""

    def date_time_string(self, timestamp=None) -> str:
        return email.utils.formatdate(time.time() - self.server.skew, usegmt=True)


class StripeDouble:
    """Answers like Stripe for a restricted key that lacks some permissions."""

    def __init__(self, lacking: dict[str, str], skew: float = 0) -> None:
        self.lacking = lacking  # path prefix -> the rak_ permission Stripe names
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=SkewedClock
        )
        self.server.skew = skew

    def app(self, environ, start_response):
        request = Request(environ)
        status, body = 404, _error("resource_missing", "No such object")
        for prefix, permission in self.lacking.items():
            if request.path.startswith(prefix):
                status = 403
                body = _error(
                    None,
                    "The provided key 'rk_test_****ooth' does not have the required "
                    "permissions for this endpoint on account 'acct_1'. Having the "
                    f"'{permission}' permission would allow this request to continue.",
                )
                break
        else:
            if request.path == "/v1/events":
                status, body = 200, {"object": "list", "data": [], "has_more": False}
            elif request.path == "/healthz":
                status, body = 200, {"status": "ok"}
        response = Response(json.dumps(body), status, content_type="application/json")
        return response(environ, start_response)

    def __enter__(self) -> StripeDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _error(code, message) -> dict:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}


def keyed_app(app_config, **config):
    return create_app({**app_config, "STRIPE_SECRET_KEY": "rk_test_booth", **config})


def test_a_restricted_key_without_a_permission_is_told_which(app, app_config):
    make_product(app, "tee-m", stock=2)
    lacking = {"/v1/refunds": "rak_refund_write", "/v1/payment_links": "rak_payment_links_write"}
    with StripeDouble(lacking) as stripe:
        keyed = keyed_app(app_config, STRIPE_API_BASE=stripe.url)
        try:
            result = check(keyed)
        finally:
            with keyed.app_context():
                db.engine.dispose()
    assert result.exit_code == 1
    assert line(result.output, "stripe").startswith(f"OK    stripe          {stripe.url} answers")
    assert line(result.output, "permissions") == (
        "FAIL  permissions     the key lacks rak_payment_links_write (Payment Links: Write), "
        "rak_refund_write (Refunds: Write). Fix: edit the restricted key in the Dashboard "
        "(Developers > API keys) and grant these, as listed in the README (Running the booth)"
    )
    assert line(result.output, "clock").startswith("OK ")


def test_a_clock_minutes_off_fails(app, app_config):
    with StripeDouble({}, skew=-200) as stripe:
        keyed = keyed_app(app_config, STRIPE_API_BASE=stripe.url)
        try:
            result = check(keyed)
        finally:
            with keyed.app_context():
                db.engine.dispose()
    clock = line(result.output, "clock")
    # The Date header has whole seconds.
    assert re.match(
        r"FAIL  clock {11}this laptop's clock is (199|200|201) s behind Stripe's", clock
    )
    assert "Fix: turn on network time" in clock


def test_webhooks_need_an_endpoint_for_public_url_sending_every_handled_event(
    app, app_config, tmp_path
):
    # The standalone sandbox is a Stripe account with webhook endpoints, as Stripe has.
    with SandboxAccount(tmp_path / "account.sqlite") as account:
        public = f"http://127.0.0.1:{free_port()}"
        url = public + "/stripe/webhook"
        webhook = {
            "STRIPE_API_BASE": account.base,
            "STRIPE_WEBHOOK_SECRET": "whsec_booth",
            "PUBLIC_URL": public,
        }
        keyed = keyed_app(app_config, STRIPE_SECRET_KEY=KEY, **webhook)
        try:
            none = check(keyed)
            events = {"url": url, "enabled_events[]": ["checkout.session.completed"]}
            partial = account.api("POST", "webhook_endpoints", data=events).json()
            missing = check(keyed)
            elsewhere = {"url": public + "/other", "enabled_events[]": ["*"]}
            assert account.api("POST", "webhook_endpoints", data=elsewhere).ok
            still_missing = check(keyed)
            every = {"url": url, "enabled_events[]": ["*"]}
            complete = account.api("POST", "webhook_endpoints", data=every).json()
            everything = check(keyed)
        finally:
            with keyed.app_context():
                db.engine.dispose()
    assert f"webhooks to {url}" in line(none.output, "events")
    assert line(none.output, "webhook") == (
        f"FAIL  webhook         no webhook endpoint for {url} on this account. Fix: add one in "
        "the Dashboard (Developers > Webhooks) with the events listed in docs/payments.md "
        "(Webhooks) and set its signing secret as STRIPE_WEBHOOK_SECRET, or poll instead "
        "(EVENT_SOURCE=poll)"
    )
    unsent = sorted(set(fulfilment.HANDLERS) - {"checkout.session.completed"})
    expected = (
        f"FAIL  webhook         the endpoint for {url} does not send {', '.join(unsent)}. "
        "Fix: add these events to it in the Dashboard (Developers > Webhooks)"
    )
    assert partial["id"].startswith("we_")
    assert line(missing.output, "webhook") == expected
    assert line(still_missing.output, "webhook") == expected  # another URL's does not count
    assert line(everything.output, "webhook") == (
        f"OK    webhook         {complete['id']} sends the store's {len(fulfilment.HANDLERS)} "
        f"event types to {url}"
    )
    # 127.0.0.1 is this laptop: neither phones nor Stripe reach it.
    assert "is this laptop's own address" in line(everything.output, "public url")


# Single checks, with plain arguments ---------------------------------------------------------


def setup(**changes) -> preflight.Setup:
    base = preflight.Setup(
        key="rk_live_booth",
        expect=None,
        sandbox=False,
        api_base=None,
        event_source="auto",
        webhook_secret=None,
        sandbox_deliver=True,
        public_url=None,
        purchase_mode="payment_link",
        link_capture="automatic",
        store=STORE,
        locale="en_US",
        poll_seconds=1.0,
        database_url="sqlite:///x.sqlite",
        instance_path=".",
    )
    return preflight.Setup(**{**base.__dict__, **changes})


@pytest.mark.parametrize(
    ("changes", "passes", "says"),
    [
        ({}, True, "live restricted key (rk_live_…)"),
        ({"key": "sk_live_x"}, True, "a restricted key (rk_live_) would limit the harm"),
        ({"key": "pk_live_x"}, False, "STRIPE_SECRET_KEY is a publishable key (pk_…)"),
        ({"key": "whsec_x"}, False, "is a webhook signing secret"),
        ({"key": " rk_live_x"}, False, "starts or ends with a space or a line break"),
        ({"key": "rk_live_x\n"}, False, "starts or ends with a space or a line break"),
        ({"key": "rk_test_x", "expect": "live"}, False, "no real money moves, but a live key"),
        ({"expect": "test"}, False, "real cards are charged, but a test key was expected"),
        ({"expect": "sandbox"}, False, "but the sandbox was expected"),
    ],
)
def test_the_key_check(changes, passes, says):
    result = access.check_key(setup(**changes))
    assert result.ok is passes and says in result.detail
    assert passes or result.fix


def test_webhooks_chosen_without_a_secret_fail():
    result = delivery.check_events(setup(event_source="webhook"))
    assert not result.ok and "STRIPE_WEBHOOK_SECRET is not set" in result.detail
    assert not delivery.check_events(setup(event_source="sometimes")).ok
    assert "polling" in delivery.check_events(setup()).detail
    secret_without_url = delivery.check_webhook_endpoint(setup(webhook_secret="whsec_x"), [])
    assert not secret_without_url.ok and "PUBLIC_URL is" in secret_without_url.detail


def test_public_url_when_phones_need_it(sandbox):
    holds = setup(purchase_mode="reserved_checkout")
    assert "PUBLIC_URL is not set" in delivery.check_public_url(holds).detail
    loop = delivery.check_public_url(setup(purchase_mode="payment_intent", public_url=sandbox.url))
    assert not loop.ok and "this laptop's own address" in loop.detail
    live_webhook = setup(webhook_secret="whsec_x", public_url="http://booth.example")
    assert "only to https URLs" in delivery.check_public_url(live_webhook).detail
    # Whether it answers, as phones would ask, without any proxy.
    assert delivery.answers(sandbox.url + "/healthz") is None
    closed = delivery.answers(f"http://127.0.0.1:{free_port()}/healthz")
    assert closed is not None and closed.startswith("no answer:")
    fetched = []
    reachable = delivery.check_public_url(
        setup(purchase_mode="reserved_checkout", public_url="http://booth.example:8080"),
        fetch=lambda url: fetched.append(url),
    )
    assert reachable.ok and fetched == ["http://booth.example:8080/healthz"]
    down = delivery.check_public_url(
        setup(purchase_mode="reserved_checkout", public_url="http://booth.example:8080"),
        fetch=lambda url: "no answer: [Errno 111] Connection refused",
    )
    assert not down.ok and "start the store first" in down.fix


def test_the_disk_check():
    assert laptop.check_disk(".").ok
    full = laptop.check_disk(".", min_free=2**62)
    assert not full.ok and "only" in full.detail and "free at least" in full.fix


def test_the_database_check_fails_when_another_program_holds_it(app, db_path):
    with app.app_context():
        assert laptop.check_database(STORE).ok
        assert "no store 'north'" in laptop.check_database("north").detail
    holder = sqlite3.connect(db_path, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with app.app_context():
            started = time.monotonic()
            locked = laptop.check_database(STORE)
    finally:
        holder.rollback()
        holder.close()
    assert not locked.ok and "database is locked" in locked.detail
    assert "no other program holds the database" in locked.fix
    assert time.monotonic() - started < 60


def test_missing_permission_is_read_from_stripes_message():
    message = (
        "The provided key 'rk_live_****' does not have the required permissions for this "
        "endpoint on account 'acct_1'. Having the 'rak_plan_write' permission would allow "
        "this request to continue."
    )
    assert access.missing_permission(message) == "rak_plan_write"
    assert access.missing_permission("no such thing") is None
