"""sync-stripe: the catalog's products, prices and payment links, made once in the sandbox."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import select

from conftest import make_product
from swagstore import create_app, inventory, offer, payments, stripe_sync, tasks
from swagstore.models import PaymentLink, Product, Task, db, read_only

STORE = "booth"


@pytest.fixture
def sandbox_env():
    # The test runs each sync_link task itself, at the moment it chooses.
    return {"SWAGSTORE_WORKER_TASKS": "false"}


def sandbox_counts(sandbox) -> dict[str, int]:
    return {
        kind: len(sandbox.api("GET", kind, params={"limit": 100}).json()["data"])
        for kind in ("products", "prices", "payment_links")
    }


def current_link(sku: str) -> PaymentLink:
    """Return the item's current link, detached: its read has ended before any Stripe call."""
    with read_only():
        link = db.session.scalar(
            select(PaymentLink).where(PaymentLink.sku == sku, PaymentLink.retired_at.is_(None))
        )
        db.session.expunge(link)
    return link


def test_sync_twice_creates_everything_once(app, runner, sandbox):
    make_product(app, "tee-m", stock=3, price=2500)
    make_product(app, "mug", stock=0, price=1200)
    first = runner.invoke(args=["sync-stripe"])
    assert first.exit_code == 0, first.output
    assert "2 products, 2 prices, 2 links created" in first.output
    assert sandbox_counts(sandbox) == {"products": 2, "prices": 2, "payment_links": 2}

    second = runner.invoke(args=["sync-stripe"])
    assert second.exit_code == 0, second.output
    assert "0 products, 0 prices, 0 links created" in second.output
    assert "2 unchanged" in second.output
    assert sandbox_counts(sandbox) == {"products": 2, "prices": 2, "payment_links": 2}

    with app.app_context():
        tee, mug = current_link("tee-m"), current_link("mug")
        link = payments.gateway().retrieve_payment_link(tee.id)
        assert tee.url == link.url and tee.active and link.active
        assert link.metadata.to_dict() == {"sku": "tee-m", "store": STORE}
        assert link.payment_intent_data.capture_method == "automatic"
        assert link.inactive_message == "Sold out at the booth, sorry!"
        message = link.after_completion.hosted_confirmation.custom_message
        assert message == stripe_sync.thanks_message("automatic", "Item tee-m")
        assert "Show this screen at the Swagstore table to collect your Item tee-m." in message
        assert "refunded automatically" in message
        items = payments.gateway().client.v1.payment_links.line_items.list(tee.id).data
        assert [(i.quantity, i.adjustable_quantity.enabled) for i in items] == [(1, False)]
        product = db.session.get(Product, "tee-m")
        assert items[0].price.id == product.stripe_price_id == tee.price_id
        db.session.rollback()
        # No stock: the link exists, switched off, so a scan shows the sold-out message.
        assert not mug.active
        assert payments.gateway().retrieve_payment_link(mug.id).active is False
    body = sandbox.api("GET", "payment_links").json()
    assert body["object"] == "list" and body["url"] == "/v1/payment_links"


def test_a_changed_price_makes_a_new_price_and_link_and_retires_the_old(app, runner, sandbox):
    make_product(app, "tee-m", stock=3, price=2500)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    with app.app_context():
        old = current_link("tee-m").id
        db.session.get(Product, "tee-m").price = 3000
        db.session.commit()
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    assert "0 products, 1 prices, 1 links created" in result.output
    assert f"old link {old} switched off" in result.output
    with app.app_context():
        new = current_link("tee-m")
        assert new.id != old
        retired = db.session.get(PaymentLink, old)
        assert retired.retired_at is not None and not retired.active
        db.session.rollback()
        gw = payments.gateway()
        assert gw.retrieve_payment_link(old).active is False
        assert gw.retrieve_price(new.price_id).unit_amount == 3000
    assert sandbox_counts(sandbox) == {"products": 1, "prices": 2, "payment_links": 2}


def test_sync_switches_links_to_match_stock(app, runner, sandbox):
    make_product(app, "tee-m", stock=1)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    with app.app_context():
        assert inventory.take("tee-m", STORE, 1, ref="test") is not None
        db.session.commit()
    off = runner.invoke(args=["sync-stripe"])
    assert "switched off" in off.output and "1 links switched" in off.output
    with app.app_context():
        link = current_link("tee-m")
        assert not link.active
        assert payments.gateway().retrieve_payment_link(link.id).active is False


def test_a_sync_cut_short_is_finished_by_a_rerun_without_duplicates(app, runner, sandbox):
    make_product(app, "tee-m", stock=5)
    make_product(app, "hoodie", stock=5, price=5500)
    # More failures than the SDK retries: the first run stops at the first payment link.
    sandbox.fault("/v1/payment_links", count=3)
    broken = runner.invoke(args=["sync-stripe"])
    assert broken.exit_code == 1
    assert "Traceback" not in broken.output
    # The item, the call, and that a rerun helps; the item after it was never tried.
    assert (
        "hoodie: FAILED to create its payment link (POST /v1/payment_links): "
        "Sandbox fault: internal error; a rerun can help: run sync-stripe again once Stripe "
        "answers" in broken.output
    )
    assert "not tried: tee-m" in broken.output
    again = runner.invoke(args=["sync-stripe"])
    assert again.exit_code == 0, again.output
    assert sandbox_counts(sandbox) == {"products": 2, "prices": 2, "payment_links": 2}


def test_a_bad_key_stops_with_a_clear_message(app, runner, sandbox):
    make_product(app, "tee-m")
    app.config["STRIPE_SECRET_KEY"] = "sk_live_wrong"
    make_product(app, "zip")
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 1
    assert "tee-m: FAILED to create its product (POST /v1/products): Invalid API Key" in (
        result.output
    )
    assert "a rerun will not help: fix STRIPE_SECRET_KEY" in result.output
    assert "not tried: zip" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_item_stripe_refuses_is_named_and_the_others_still_sync(app, runner, sandbox):
    make_product(app, "tee-m")
    make_product(app, "zip", price=5500)
    with app.app_context():
        # Synced once against another account: this one has no such price.
        db.session.get(Product, "tee-m").stripe_price_id = "price_elsewhere"
        db.session.commit()
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 1
    assert "tee-m: FAILED to read its price (GET /v1/prices/…)" in result.output
    assert "price_elsewhere" in result.output
    assert "a rerun will not help: its Stripe object is not on this account" in result.output
    assert "zip: created product, price, link" in result.output
    assert "not tried" not in result.output and "Traceback" not in result.output
    with app.app_context():
        assert current_link("zip").active


def test_a_create_whose_500_stripe_keeps_is_made_once_under_a_successor_key(app, runner, sandbox):
    make_product(app, "tee-m")
    # Stripe started the create and failed; it replays that 500 to the key for a day.
    sandbox.fault("/v1/products", count=1, mode="crash")
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    assert "tee-m: created product, price, link" in result.output
    again = runner.invoke(args=["sync-stripe"])
    assert again.exit_code == 0, again.output
    assert len(sandbox.api("GET", "products").json()["data"]) == 1
    with app.app_context():
        assert current_link("tee-m").active


def test_a_stock_change_during_the_link_call_still_leaves_the_link_matching_stock(
    app, runner, sandbox
):
    """A sync_link task re-reads the stock after its Stripe call and calls again if it moved.

    Driven through the task kind "sync_link" (tasks.enqueue_link_sync + tasks.run_due), so
    it holds wherever the sync code lives. Mutation tried: confirming without the re-read
    (`if True:` for the second _link_and_wanted check) leaves the link off: this fails.
    """
    make_product(app, "tee-m", stock=1)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    with app.app_context():
        link_id = current_link("tee-m").id
        assert inventory.take("tee-m", STORE, 1, ref="last unit") is not None
        tasks.enqueue_link_sync("tee-m", STORE)
        db.session.commit()
        (first,) = db.session.scalars(select(Task.id).where(Task.status == "pending")).all()
    # Stripe stores the switch-off at once but answers it 3 s late.
    sandbox.fault("/v1/payment_links/", count=1, mode="timeout", seconds=3)

    def run_one() -> None:
        with app.app_context():
            tasks.run_due(limit=1)

    runner_thread = threading.Thread(target=run_one)
    runner_thread.start()
    deadline = time.monotonic() + 30
    while requests.get(sandbox.url + "/sandbox/_control/faults", timeout=30).json()["faults"]:
        assert time.monotonic() < deadline, "the switch-off call never reached Stripe"
        time.sleep(0.05)
    with app.app_context():  # a delivery arrives while the call is on its way back
        inventory.restock("tee-m", STORE, 2, ref="delivery")
        db.session.commit()
    runner_thread.join(timeout=60)
    assert not runner_thread.is_alive()

    with app.app_context():
        assert db.session.get(Task, first).status == "done"
        db.session.rollback()
        assert current_link("tee-m").active is True
        assert payments.gateway().retrieve_payment_link(link_id).active is True


def test_sandbox_links_follow_public_url_to_a_new_port(app, app_config):
    """`make dev PORT=…` or a LAN address: the next sync re-points the sandbox's links."""
    make_product(app, "tee-m", stock=2)
    made = []

    def at(port: int):
        made.append(create_app({**app_config, "PUBLIC_URL": f"http://127.0.0.1:{port}"}))
        return made[-1]

    try:
        old_port, new_port = at(5001), at(5002)
        assert old_port.test_cli_runner().invoke(args=["sync-stripe"]).exit_code == 0
        with old_port.app_context():
            old = current_link("tee-m")
        assert old.url.startswith("http://127.0.0.1:5001/sandbox/pay/plink_")
        same = old_port.test_cli_runner().invoke(args=["sync-stripe"])
        assert "1 unchanged" in same.output, same.output

        moved = new_port.test_cli_runner().invoke(args=["sync-stripe"])
        assert moved.exit_code == 0, moved.output
        assert f"created link; old link {old.id} switched off" in moved.output
        with new_port.app_context():
            new = current_link("tee-m")
            assert payments.gateway().retrieve_payment_link(old.id).active is False
        assert new.url.startswith("http://127.0.0.1:5002/sandbox/pay/plink_")
        # The kiosk's code leads to the new address, and that link opens a checkout there.
        client = new_port.test_client()
        (item,) = client.get("/api/stock").get_json()["items"]
        assert item["buy_url"] == new.url
        opened = client.get(new.url.removeprefix("http://127.0.0.1:5002"))
        assert opened.status_code in (302, 303)
        assert opened.headers["Location"].startswith("http://127.0.0.1:5002/sandbox/checkout/")
        # A check run for yet another address says the links point elsewhere.
        result = at(5003).test_cli_runner().invoke(args=["check", "--expect", "sandbox"])
        assert "tee-m: its link points at http://127.0.0.1:5002, not PUBLIC_URL" in result.output
    finally:
        for other in made:
            with other.app_context():
                db.engine.dispose()


def test_a_price_stripe_will_not_charge_is_named_with_what_to_fix(app, runner, sandbox):
    # Loaded around load-catalog (which refuses it): a database from before that rule.
    make_product(app, "button", price=30)
    make_product(app, "tee-m")
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 1
    (failed,) = [row for row in result.output.splitlines() if row.startswith("button: FAILED")]
    assert "(amount_too_small); a rerun will not help: fix the item in the catalog" in failed
    assert "POST /v1/" in failed
    assert "tee-m: created product, price, link" in result.output


SIZES = ("S", "M", "L")
# What the buyer's phone asks for: the sandbox answers its hosted pages as HTML.
PAGE = {"Accept": "text/html"}


def make_tees(app, name: str = "Logo T-shirt") -> None:
    """Three sizes of one navy tee (a group), and a mug on its own."""
    for size in SIZES:
        make_product(
            app,
            f"tee-{size.lower()}",
            stock=3,
            name=name,
            group="tee",
            attributes={"colour": "navy", "size": size},
        )
    make_product(app, "mug", stock=3, name="Enamel mug", price=1200)


def stripe_product(sandbox, sku: str) -> dict:
    """Return the item's product as Stripe has it."""
    (product,) = [
        p
        for p in sandbox.api("GET", "products", params={"limit": 100}).json()["data"]
        if p["metadata"].get("sku") == sku
    ]
    return product


def confirmation_message(app, sku: str) -> str:
    with app.app_context():
        link = payments.gateway().retrieve_payment_link(current_link(sku).id)
    return link.after_completion.hosted_confirmation.custom_message


def link_id(app, sku: str) -> str:
    with app.app_context():
        return current_link(sku).id


def checkout_names(app, sandbox, sku: str) -> list[str]:
    """Open the item's link as a phone does; return the names its checkout's line items show."""
    session = sandbox.open_session(link_id(app, sku))
    with app.app_context():
        items = payments.gateway().client.v1.checkout.sessions.line_items.list(session["id"])
    return [item.description for item in items.data]


def test_each_variant_is_on_stripe_under_the_name_staff_see(app, runner, sandbox):
    make_tees(app)
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        staff = offer.item_labels(STORE)
        db.session.rollback()
    assert staff["tee-l"] == "Logo T-shirt, L"
    names = {
        p["metadata"]["sku"]: p["name"] for p in sandbox.api("GET", "products").json()["data"]
    }
    assert (
        names
        == staff
        == {
            "tee-s": "Logo T-shirt, S",
            "tee-m": "Logo T-shirt, M",
            "tee-l": "Logo T-shirt, L",
            "mug": "Enamel mug",
        }
    )
    # The checkout page (and so the receipt) names the size; so does the confirmation.
    assert checkout_names(app, sandbox, "tee-l") == ["Logo T-shirt, L"]
    message = confirmation_message(app, "tee-l")
    assert message.startswith(
        "Thank you! Show this screen at the Swagstore table to collect your Logo T-shirt, L. "
    )
    assert "refunded automatically" in message
    assert confirmation_message(app, "tee-m") != message
    # The buyer's screen after paying: Stripe's confirmation with that message.
    session = sandbox.open_session(link_id(app, "tee-l"))
    url = f"{sandbox.url}/sandbox/checkout/{session['id']}/pay"
    page = requests.post(url, headers=PAGE, timeout=60).text
    assert "collect your Logo T-shirt, L." in page


def test_a_renamed_item_is_renamed_on_stripe_once(app, runner, sandbox):
    make_tees(app, name="Logo tee")
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    old_link = link_id(app, "tee-l")
    # A booth synced before products carried labels: the bare name, the old message.
    mug = stripe_product(sandbox, "mug")
    bare = sandbox.api(
        "POST", f"products/{stripe_product(sandbox, 'tee-s')['id']}", data={"name": "Logo tee"}
    )
    assert bare.status_code == 200, bare.text
    # load-catalog with the tee's new name.
    make_tees(app, name="Logo T-shirt")

    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 0, result.output
    for size in SIZES:
        assert (
            f'tee-{size.lower()}: product renamed "Logo T-shirt, {size}"; '
            "after-payment page updated -> plink_"
        ) in result.output
    assert "0 products, 0 prices, 0 links created" in result.output
    assert f"{len(SIZES)} products renamed" in result.output
    assert "mug: up to date" in result.output and "1 unchanged" in result.output
    assert stripe_product(sandbox, "tee-l")["name"] == "Logo T-shirt, L"
    assert stripe_product(sandbox, "tee-s")["name"] == "Logo T-shirt, S"
    assert stripe_product(sandbox, "mug") == mug
    # The same link, now selling under the new name and thanking for it.
    assert link_id(app, "tee-l") == old_link
    assert checkout_names(app, sandbox, "tee-l") == ["Logo T-shirt, L"]
    assert "collect your Logo T-shirt, L." in confirmation_message(app, "tee-l")

    # A rerun changes nothing: any update would stamp the products with the moved clock.
    before = {sku: stripe_product(sandbox, sku) for sku in ("tee-s", "tee-m", "tee-l")}
    sandbox.advance_clock(120)
    again = runner.invoke(args=["sync-stripe"])
    assert again.exit_code == 0, again.output
    assert "product renamed" not in again.output and "0 products renamed" in again.output
    assert "4 unchanged" in again.output
    assert {sku: stripe_product(sandbox, sku) for sku in before} == before

    # Back to the old name: a new request under a new key, not a replay of the first rename.
    make_tees(app, name="Logo tee")
    back = runner.invoke(args=["sync-stripe"])
    assert back.exit_code == 0, back.output
    assert 'tee-l: product renamed "Logo tee, L"' in back.output
    assert stripe_product(sandbox, "tee-l")["name"] == "Logo tee, L"
    assert checkout_names(app, sandbox, "tee-l") == ["Logo tee, L"]
    # And forward again: the same rename as the first, still a new request.
    make_tees(app, name="Logo T-shirt")
    forward = runner.invoke(args=["sync-stripe"])
    assert 'tee-l: product renamed "Logo T-shirt, L"' in forward.output, forward.output
    assert stripe_product(sandbox, "tee-l")["name"] == "Logo T-shirt, L"


def test_a_long_name_keeps_the_message_within_stripes_limit(app, runner, sandbox):
    name = "Limited edition " + "very " * 36 + "long hoodie"
    size = ", ".join(["XXL extra long sleeves"] * 6)
    for sku, value in (("hood-a", size), ("hood-b", "S")):
        make_product(app, sku, name=name, group="hood", attributes={"size": value})
    result = runner.invoke(args=["sync-stripe"])
    # Stripe refuses a custom_message over 500 characters: the whole name would not fit.
    assert len(stripe_sync.THANKS_MESSAGES["automatic"].format(item=f"{name}, {size}")) > 500
    assert result.exit_code == 0, result.output
    message = confirmation_message(app, "hood-a")
    assert len(message) == stripe_sync.CUSTOM_MESSAGE_MAX
    # Cut in the middle: the start names the item, the end (its size) still shows.
    start, end = message.split("…")
    assert start.startswith(
        "Thank you! Show this screen at the Swagstore table to collect your Limited edition very"
    )
    assert end.endswith(
        f"long hoodie, {size}. If it sold out a moment before you paid, your payment is "
        "refunded automatically: there is nothing to do."
    )
    assert stripe_product(sandbox, "hood-a")["name"] == f"{name}, {size}"
