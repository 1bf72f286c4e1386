"""Each client address's fair share of holds, without HTTP (the live /buy test: test_public.py).

A visitor holds at most one unit per item (their token); a client address holds at most
`open` units at a time and starts at most `per_minute` holds in any minute, so one phone
(or one script) cannot pin the stock for HOLD_SECONDS, however many cookies it throws away.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from conftest import STORE, both_databases, make_product
from swagstore import holds
from swagstore.models import Hold, Stock, db, utcnow

SHARE = holds.Share("client-a", open=4, per_minute=6)


def reserved(sku: str = "tee-m") -> int:
    stock = db.session.get(Stock, (sku, STORE))
    db.session.refresh(stock)
    value = stock.reserved
    db.session.rollback()
    return value


def test_a_client_holds_at_most_its_open_share_and_then_is_told_why(app):
    make_product(app, stock=50)
    with app.app_context():
        for n in range(SHARE.open):
            assert holds.start_hold("tee-m", STORE, 300, f"visitor-{n}", SHARE) is not None
        with pytest.raises(holds.TooMany) as refused:
            holds.start_hold("tee-m", STORE, 300, "one-more", SHARE)
        assert (refused.value.limit, refused.value.retry_after) == ("open", 60)
        assert reserved() == SHARE.open
        # Another address is not affected; a visitor's own hold is still found on a reload.
        other = holds.Share("client-b", open=4, per_minute=6)
        assert holds.start_hold("tee-m", STORE, 300, "neighbour", other) is not None
        assert holds.start_hold("tee-m", STORE, 300, "visitor-0", SHARE).new is False
        assert reserved() == SHARE.open + 1


def test_a_client_starts_at_most_its_share_a_minute(app):
    make_product(app, stock=50)
    fast = holds.Share("client-a", open=100, per_minute=3)
    with app.app_context():
        ids = [holds.start_hold("tee-m", STORE, 300, f"v{n}", fast).id for n in range(3)]
        with pytest.raises(holds.TooMany) as refused:
            holds.start_hold("tee-m", STORE, 300, "v3", fast)
        assert refused.value.limit == "per_minute"
        assert 1 <= refused.value.retry_after <= 61
        # A minute later the client may start holds again (the three are still open).
        earlier = utcnow() - timedelta(seconds=61)
        db.session.execute(update(Hold).where(Hold.id.in_(ids)).values(created_at=earlier))
        db.session.commit()
        assert holds.start_hold("tee-m", STORE, 300, "v3", fast) is not None


def test_ended_holds_free_the_open_share(app):
    make_product(app, stock=50)
    with app.app_context():
        held = [holds.start_hold("tee-m", STORE, 300, f"v{n}", SHARE) for n in range(4)]
        holds.settle(held[0].id)
        holds.release(held[1].id)
        db.session.commit()
        assert holds.start_hold("tee-m", STORE, 300, "v4", SHARE) is not None
        assert holds.start_hold("tee-m", STORE, 300, "v5", SHARE) is not None
        with pytest.raises(holds.TooMany):  # six started this minute
            holds.start_hold("tee-m", STORE, 300, "v6", SHARE)


def test_a_sold_out_answer_uses_no_share(app):
    make_product(app, stock=0)
    tight = holds.Share("client-a", open=1, per_minute=1)
    with app.app_context():
        for n in range(5):
            assert holds.start_hold("tee-m", STORE, 300, f"v{n}", tight) is None


@both_databases
def test_forty_concurrent_cookieless_holds_from_one_client_get_exactly_its_share(
    app, database_url
):
    """Mutation tried: without the advisory lock in _within_share, [postgres] held 17 of 40."""
    make_product(app, stock=100)
    burst = 40
    barrier = threading.Barrier(burst)

    def hold(n: int) -> str:
        with app.app_context():
            db.session.connection()  # connected before the start line
            db.session.rollback()
            barrier.wait(timeout=60)
            try:
                # A new token each time: a client that throws its cookie away.
                return "held" if holds.start_hold("tee-m", STORE, 300, f"t{n}", SHARE) else "none"
            except holds.TooMany:
                return "refused"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(burst) as pool:
        outcomes = list(pool.map(hold, range(burst)))
    assert outcomes.count("held") == SHARE.open
    assert outcomes.count("refused") == burst - SHARE.open
    with app.app_context():
        assert reserved() == SHARE.open
        count = select(func.count()).select_from(Hold).where(Hold.client == SHARE.client)
        assert db.session.scalar(count) == SHARE.open
