"""sync-stripe: the catalog's products, prices and payment links, made once in the sandbox."""

from __future__ import annotations

from sqlalchemy import select

from conftest import make_product
from swagstore import catalog, inventory, payments
from swagstore.models import PaymentLink, Product, db

STORE = "booth"


def sandbox_counts(sandbox) -> dict[str, int]:
    return {
        kind: len(sandbox.api("GET", kind, params={"limit": 100}).json()["data"])
        for kind in ("products", "prices", "payment_links")
    }


def current_link(sku: str) -> PaymentLink:
    return db.session.scalar(
        select(PaymentLink).where(PaymentLink.sku == sku, PaymentLink.retired_at.is_(None))
    )


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
        assert link.after_completion.hosted_confirmation.custom_message == catalog.THANKS_MESSAGE
        items = payments.gateway().client.v1.payment_links.line_items.list(tee.id).data
        assert [(i.quantity, i.adjustable_quantity.enabled) for i in items] == [(1, False)]
        product = db.session.get(Product, "tee-m")
        assert items[0].price.id == product.stripe_price_id == tee.price_id
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
    assert "run sync-stripe again" in broken.output
    again = runner.invoke(args=["sync-stripe"])
    assert again.exit_code == 0, again.output
    assert sandbox_counts(sandbox) == {"products": 2, "prices": 2, "payment_links": 2}


def test_a_bad_key_stops_with_a_clear_message(app, runner, sandbox):
    make_product(app, "tee-m")
    app.config["STRIPE_SECRET_KEY"] = "sk_live_wrong"
    result = runner.invoke(args=["sync-stripe"])
    assert result.exit_code == 1
    assert "check STRIPE_SECRET_KEY" in result.output
    assert "Invalid API Key" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
