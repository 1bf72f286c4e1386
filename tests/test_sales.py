"""Cash and giveaway sales, manual refunds, the sales list and the report, without HTTP."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from conftest import STORE, make_item, make_product
from swagstore import catalog, inventory, offer, sales
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
        with pytest.raises(sales.Refused, match="refund pending card sale"):
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
    card = make_sale(
        app,
        payment_intent_id="pi_1",
        checkout_session_id="cs_1",
        pickup_code="K7",
        created_at=datetime(2026, 12, 1, 20, 24, 20, tzinfo=UTC),
    )
    with app.app_context():
        cash = sales.sell("tee-m", STORE, "cash", 2, actor="staff:ada", note="a, b").id
        rows = sales.report_rows(STORE, ZoneInfo("America/Chicago"))
        out = io.StringIO()
        sales.write_csv(rows, out)
    assert [r["sale_id"] for r in rows] == [card, cash]
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(parsed[0]) == sales.REPORT_COLUMNS
    assert parsed[0] == {
        "sale_id": str(card),
        "created_at": "2026-12-01T14:24:20-06:00",
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
        "pickup_code": "K7",
        "handed_over_at": "",
    }
    assert (parsed[1]["kind"], parsed[1]["amount"], parsed[1]["note"]) == ("cash", "5000", "a, b")
    # A cash sale is handed over as it is recorded.
    assert parsed[1]["handed_over_at"] == parsed[1]["created_at"]
    assert datetime.fromisoformat(parsed[1]["created_at"]).utcoffset() == timedelta(hours=-6)


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
    make_sale(
        app, "mug", created_at=at(12), amount=1800, status="refund_pending", payment_intent_id="p6"
    )
    with app.app_context():
        totals = sales.totals(STORE)
        chicago = sales.totals(STORE, ZoneInfo("America/Chicago"))
        listed = {item.sku: item.sold for item in offer.listings(STORE)}
    hour = datetime(2026, 5, 4, 9, tzinfo=UTC)
    # Refunded, being refunded and voided sales are not units sold: only what left for good.
    assert totals.per_hour == [
        (hour, 3),
        (hour.replace(hour=10), 0),
        (hour.replace(hour=11), 1),
        (hour.replace(hour=12), 1),
    ]
    assert [(i.sku, i.label, i.units, i.takings) for i in totals.per_item] == [
        ("tee-m", "Item tee-m", 4, {"usd": 7500}),
        ("mug", "Item mug", 1, {"usd": 1800}),
    ]
    assert totals.units == 5
    assert totals.takings == {"usd": 2500 + 5000 + 1800}
    assert totals.by_status == {"fulfilled": 4, "refunded": 1, "voided": 1, "refund_pending": 1}
    assert totals.by_kind == {"card": 4, "giveaway": 1}
    # The stock page's "sold" is the same count.
    assert listed == {i.sku: i.units for i in totals.per_item}
    # In Chicago (UTC-5 in May) the same sales fell at 4, 6 and 7 in the morning.
    assert [(h.hour, n) for h, n in chicago.per_hour] == [(4, 3), (5, 0), (6, 1), (7, 1)]


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


def test_csv_text_stays_in_its_cell_where_a_spreadsheet_splits_on_semicolons(app):
    make_product(app, "tee-m", stock=5)
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 1, actor="staff", note="x;=1+1")
        out = io.StringIO()
        sales.write_csv(sales.report_rows(STORE), out)
    line = out.getvalue().splitlines()[1]
    # Quoted, a spreadsheet that splits on ";" as well as "," keeps the note one cell.
    assert ',"x;=1+1",' in line
    assert ',"Item tee-m",1,2500,"usd",' in line  # numbers stay numbers
    assert next(csv.DictReader(io.StringIO(out.getvalue())))["note"] == "x;=1+1"


def test_variants_are_labelled_by_what_sets_them_apart(app):
    navy = {"colour": "Navy"}
    with app.app_context():
        catalog.load(
            [
                make_item(
                    "tee-s", group="tee", name="Logo T-shirt", attributes={"size": "S", **navy}
                ),
                make_item(
                    "tee-m", group="tee", name="Logo T-shirt", attributes={"size": "M", **navy}
                ),
                make_item("hoodie", name="Zip hoodie", attributes={"colour": "Charcoal"}),
                make_item("mug", name="Mug"),
            ],
            STORE,
        )
        db.session.commit()
        assert offer.item_labels(STORE) == {
            "tee-s": "Logo T-shirt, S",
            "tee-m": "Logo T-shirt, M",
            "hoodie": "Zip hoodie",
            "mug": "Mug",
        }


def test_to_hand_over_lists_paid_card_sales_newest_first(app):
    make_product(app, "tee-m", stock=10, name="Logo tee")

    def at(minute: int) -> datetime:
        return datetime(2026, 12, 3, 20, minute, tzinfo=UTC)

    first = make_sale(app, payment_intent_id="pi_1", pickup_code="K7", created_at=at(1))
    second = make_sale(app, payment_intent_id="pi_2", pickup_code="M3", created_at=at(2))
    make_sale(app, payment_intent_id="pi_3", status="refunded", created_at=at(3))
    make_sale(app, payment_intent_id="pi_4", status="pending", created_at=at(4))
    with app.app_context():
        sales.sell("tee-m", STORE, "cash", 1, actor="staff")
        shown = sales.to_hand_over(STORE)
        assert [(p.id, p.code, p.label, p.amount) for p in shown] == [
            (second, "M3", "Logo tee", 2500),
            (first, "K7", "Logo tee", 2500),
        ]
        done = sales.hand_over(first, STORE, actor="staff:ada")
        assert (done.code, done.label) == ("K7", "Logo tee")
        assert [p.id for p in sales.to_hand_over(STORE)] == [second]
        sale = db.session.get(Sale, first)
        assert sale.handed_over_by == "staff:ada" and sale.handed_over_at is not None


def test_a_sale_is_handed_over_once_and_only_a_paid_card_sale(app):
    make_product(app, "tee-m", stock=10)
    card = make_sale(app, payment_intent_id="pi_1", pickup_code="K7")
    refunded = make_sale(app, payment_intent_id="pi_2", status="refunded")
    with app.app_context():
        cash = sales.sell("tee-m", STORE, "cash", 1, actor="staff").id
        sales.hand_over(card, STORE, actor="staff:ada")
        with pytest.raises(sales.Refused, match="K7.* already handed over by staff:ada"):
            sales.hand_over(card, STORE, actor="staff:bob")
        assert db.session.get(Sale, card).handed_over_by == "staff:ada"
        with pytest.raises(sales.Refused, match="refunded card sale"):
            sales.hand_over(refunded, STORE, actor="staff")
        with pytest.raises(sales.Refused, match="already handed over"):
            sales.hand_over(cash, STORE, actor="staff")
        with pytest.raises(sales.Refused, match="no sale 999"):
            sales.hand_over(999, STORE, actor="staff")
        with pytest.raises(sales.Refused, match="no sale"):
            sales.hand_over(card, "elsewhere", actor="staff")


@pytest.mark.parametrize("text", ["paid", "FULFILLED", "fulfilled ", "' or 1=1"])
def test_an_unknown_status_filter_is_refused_with_the_allowed_list(text):
    with pytest.raises(sales.UnknownStatus, match="use one of pending, fulfilled, voided"):
        sales.parse_status(text)
    assert sales.parse_status("") is None
    assert sales.parse_status("refund_pending") == "refund_pending"
