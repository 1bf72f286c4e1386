"""Cash and giveaway sales, manual refunds, the sales list and the report, without HTTP."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from conftest import STORE, make_product
from swagstore import inventory, sales
from swagstore.models import Sale, Stock, StockEvent, Task, db


def make_sale(app, sku: str = "tee-m", **fields) -> int:
    """Record a card sale as fulfilment would (stock taken, sale fulfilled); return its id."""
    fields.setdefault("kind", "card")
    fields.setdefault("status", "fulfilled")
    fields.setdefault("quantity", 1)
    fields.setdefault("amount", 2500 * fields["quantity"])
    with app.app_context():
        sale = Sale(sku=sku, store=STORE, currency="usd", **fields)
        db.session.add(sale)
        db.session.flush()
        if fields["status"] == "fulfilled":
            assert inventory.take(sku, STORE, fields["quantity"], ref=f"sale:{sale.id}")
        db.session.commit()
        return sale.id


def stock_of(sku: str = "tee-m") -> tuple[int, int]:
    stock = db.session.get(Stock, (sku, STORE))
    db.session.refresh(stock)
    return stock.on_hand, stock.reserved


def test_cash_sale_takes_stock_and_records_the_price(app):
    make_product(app, "tee-m", stock=3, price=2500)
    with app.app_context():
        sale = sales.sell("tee-m", STORE, "cash", 2, actor="staff:ada", note=" paid in coins ")
        assert (sale.kind, sale.status, sale.amount, sale.currency) == (
            "cash",
            "fulfilled",
            5000,
            "usd",
        )
        assert (sale.quantity, sale.actor, sale.note) == (2, "staff:ada", "paid in coins")
        assert stock_of() == (1, 0)
        event = db.session.scalars(select(StockEvent).order_by(StockEvent.id.desc())).first()
        assert (event.reason, event.ref, event.actor, event.on_hand) == (
            "cash",
            f"sale:{sale.id}",
            "staff:ada",
            1,
        )


def test_giveaway_is_a_sale_of_amount_zero(app):
    make_product(app, "stickers", stock=50, price=300)
    with app.app_context():
        sale = sales.sell("stickers", STORE, "giveaway", 1, actor="staff")
        assert (sale.kind, sale.amount, sale.status) == ("giveaway", 0, "fulfilled")
        assert stock_of("stickers") == (49, 0)


@pytest.mark.parametrize(
    ("sku", "kind", "quantity", "message"),
    [
        ("tee-m", "cash", 3, "Only 2 of tee-m available"),
        ("tee-m", "giveaway", 3, "Only 2 of tee-m available"),
        ("nope", "cash", 1, "There is no item 'nope'"),
        ("tee-m", "card", 1, "cash or a giveaway"),
        ("tee-m", "", 1, "cash or a giveaway"),
    ],
)
def test_a_refused_sale_changes_nothing(app, sku, kind, quantity, message):
    make_product(app, "tee-m", stock=3)
    with app.app_context():
        inventory.hold("tee-m", STORE)  # a checkout in progress: 2 available
        db.session.commit()
        with pytest.raises(sales.Refused, match=message):
            sales.sell(sku, STORE, kind, quantity, actor="staff")
        assert db.session.scalars(select(Sale)).all() == []
        assert stock_of() == (3, 1)
        assert len(db.session.scalars(select(StockEvent)).all()) == 2  # catalog + hold


def test_refund_queues_a_refund_task_and_marks_the_sale_pending(app):
    make_product(app, "tee-m", stock=3)
    sale_id = make_sale(app, payment_intent_id="pi_1", checkout_session_id="cs_1")
    with app.app_context():
        sale = sales.refund(sale_id, restock=False, actor="staff")
        assert sale.status == "refund_pending"
        task = db.session.scalars(select(Task).where(Task.kind == "refund")).one()
        assert (task.sale_id, task.status, task.args["payment_intent"]) == (
            sale_id,
            "pending",
            "pi_1",
        )
        assert stock_of() == (2, 0)
        with pytest.raises(sales.Refused, match="refund_pending card sale"):
            sales.refund(sale_id, restock=True, actor="staff")
        assert db.session.scalars(select(Task).where(Task.kind == "refund")).all() == [task]
        assert stock_of() == (2, 0)


def test_refund_can_put_the_unit_back_on_sale(app):
    make_product(app, "tee-m", stock=1)
    sale_id = make_sale(app, payment_intent_id="pi_1")
    with app.app_context():
        sales.refund(sale_id, restock=True, actor="staff:bo")
        assert stock_of() == (1, 0)
        event = db.session.scalars(select(StockEvent).order_by(StockEvent.id.desc())).first()
        assert (event.reason, event.ref, event.actor) == (
            "refund-return",
            f"sale:{sale_id}",
            "staff:bo",
        )


def test_only_a_fulfilled_card_sale_can_be_refunded(app):
    make_product(app, "tee-m", stock=5)
    with app.app_context():
        cash = sales.sell("tee-m", STORE, "cash", 1, actor="staff").id
    voided = make_sale(app, status="voided", payment_intent_id="pi_v")
    for sale_id, message in (
        (cash, "fulfilled cash sale"),
        (voided, "voided card"),
        (99, "no sale 99"),
    ):
        with app.app_context():
            with pytest.raises(sales.Refused, match=message):
                sales.refund(sale_id, restock=True, actor="staff")
            assert db.session.scalars(select(Task).where(Task.kind == "refund")).all() == []
            assert stock_of() == (4, 0)


def test_list_sales_newest_first_and_filtered_by_status(app):
    make_product(app, "tee-m", stock=5, name="Logo tee")
    first = make_sale(app, payment_intent_id="pi_1")
    second = make_sale(app, status="voided", payment_intent_id="pi_2")
    with app.app_context():
        assert [r.sale.id for r in sales.list_sales(STORE)] == [second, first]
        assert [r.sale.id for r in sales.list_sales(STORE, "voided")] == [second]
        assert sales.list_sales(STORE, "refunded") == []
        assert sales.list_sales(STORE)[0].name == "Logo tee"
        assert sales.list_sales("elsewhere") == []


def test_report_rows_and_csv_have_every_column(app):
    make_product(app, "tee-m", stock=5, name="Logo tee")
    card = make_sale(app, payment_intent_id="pi_1", checkout_session_id="cs_1")
    with app.app_context():
        cash = sales.sell("tee-m", STORE, "cash", 2, actor="staff:ada", note="a, b").id
        rows = sales.report_rows(STORE)
        out = io.StringIO()
        sales.write_csv(rows, out)
    assert [r["sale_id"] for r in rows] == [card, cash]
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(parsed[0]) == sales.REPORT_COLUMNS
    assert parsed[0] | {"created_at": ""} == {
        "sale_id": str(card),
        "created_at": "",
        "sku": "tee-m",
        "name": "Logo tee",
        "quantity": "1",
        "amount": "2500",
        "currency": "usd",
        "kind": "card",
        "status": "fulfilled",
        "payment_intent": "pi_1",
        "checkout_session": "cs_1",
        "actor": "",
        "note": "",
    }
    assert (parsed[1]["kind"], parsed[1]["amount"], parsed[1]["note"]) == ("cash", "5000", "a, b")
    datetime.fromisoformat(parsed[0]["created_at"])


def test_totals_count_units_per_hour_and_item_and_takings(app):
    make_product(app, "tee-m", stock=20)
    make_product(app, "mug", stock=20, price=1800)

    def at(hour: int) -> datetime:
        return datetime(2026, 5, 4, hour, 17, tzinfo=UTC)

    make_sale(app, created_at=at(9), payment_intent_id="pi_1")
    make_sale(app, created_at=at(9), quantity=2, payment_intent_id="pi_2")
    make_sale(app, "mug", created_at=at(12), amount=1800, payment_intent_id="pi_3")
    make_sale(
        app, "mug", created_at=at(12), amount=1800, status="refunded", payment_intent_id="pi_4"
    )
    make_sale(app, created_at=at(11), status="voided", payment_intent_id="pi_5")
    make_sale(app, created_at=at(11), kind="giveaway", amount=0)
    with app.app_context():
        totals = sales.totals(STORE)
    hour = datetime(2026, 5, 4, 9, tzinfo=UTC)
    assert totals.per_hour == [
        (hour, 3),
        (hour.replace(hour=10), 0),
        (hour.replace(hour=11), 1),
        (hour.replace(hour=12), 2),
    ]
    assert totals.per_item == [("tee-m", 4), ("mug", 2)]
    assert totals.takings == {"usd": 2500 + 5000 + 1800}
    assert totals.by_status == {"fulfilled": 4, "refunded": 1, "voided": 1}
    assert totals.by_kind == {"card": 5, "giveaway": 1}


@pytest.mark.parametrize("text", ["", " ", "abc", "-1", "1.5", "0x10", "١", "1e3", "1000001"])
def test_whole_number_refuses_what_is_not_a_count(text):
    with pytest.raises(sales.Refused, match="Restock: enter a whole number"):
        sales.whole_number(text, "Restock", minimum=1)


def test_whole_number_accepts_counts_from_the_minimum():
    assert sales.whole_number(" 7 ", "Restock", minimum=1) == 7
    assert sales.whole_number("0", "Counted", minimum=0) == 0
    with pytest.raises(sales.Refused):
        sales.whole_number("0", "Restock", minimum=1)


def test_dashboard_links_follow_the_key_mode():
    assert sales.dashboard_url("pi_1", None) is None
    assert sales.dashboard_url(None, "sk_test_x") is None
    assert (
        sales.dashboard_url("pi_1", "sk_test_x")
        == "https://dashboard.stripe.com/test/payments/pi_1"
    )
    assert sales.dashboard_url("pi_1", "rk_live_x") == "https://dashboard.stripe.com/payments/pi_1"


def test_uncaptured_counts_fulfilled_card_sales_awaiting_capture(app):
    make_product(app, "tee-m", stock=5)
    make_sale(app, payment_intent_id="pi_1")
    make_sale(app, payment_intent_id="pi_2", captured=True)
    make_sale(app, payment_intent_id="pi_3", status="voided")
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 1, actor="staff")
        assert sales.uncaptured(STORE) == 1
        assert sales.uncaptured("elsewhere") == 0


def test_csv_cells_cannot_smuggle_spreadsheet_formulas(app):
    make_product(app, "tee-m", stock=5, name='=HYPERLINK("http://evil")')
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 1, actor="staff", note="@SUM(A1)")
        out = io.StringIO()
        sales.write_csv(sales.report_rows(STORE), out)
    row = next(csv.DictReader(io.StringIO(out.getvalue())))
    assert (row["name"], row["note"]) == ('\'=HYPERLINK("http://evil")', "'@SUM(A1)")
    assert row["amount"] == "2500"
