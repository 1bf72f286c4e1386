"""The drop: 5,000 visitors at once for 100 units, in hold mode (reserved_checkout).

Starts the store under gunicorn as the booth runs it, in PURCHASE_MODE=reserved_checkout
against its offline sandbox, with one item of UNITS units. A separate client process opens
one connection per visitor, each with its own cookie jar, and at one start line every
visitor asks `GET /buy/<sku>`: a hold and a Checkout Session (303 to it) or a sold-out
page (409). Then the invariant: exactly UNITS sessions, UNITS active holds, the stock's
reserved units equal to the holds, nothing sold twice. The baseline is a bare Flask page
under the same settings, driven by the same client.

    python bench/drop.py [--visitors 5000] [--units 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import harness
from sqlalchemy import func, select

from swagstore import create_app
from swagstore.models import Hold, Stock, db

SKU = "drop-tee"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--units", type=int, default=100)
    args = parser.parse_args()
    if importlib.util.find_spec("swagstore.sandbox") is None:
        # /buy opens a Checkout Session; with no Stripe key that is the sandbox's job.
        sys.exit("drop needs the offline sandbox (swagstore/sandbox), which is not in this tree")

    work = harness.workdir("drop")
    uri = f"sqlite:///{work / 'swagstore.sqlite'}"
    env = harness.store_env(uri, PURCHASE_MODE="reserved_checkout", STORE_ID="booth")
    catalog = Path(work / "catalog.toml")
    catalog.write_text(
        f'[[item]]\nsku = "{SKU}"\nname = "Drop tee"\nprice = 3000\n'
        f'currency = "usd"\nstock = {args.units}\n'
    )
    harness.flask(env, "init-db")
    harness.flask(env, "load-catalog", str(catalog))
    paths = work / "visitors.txt"
    paths.write_text(f"/buy/{SKU}\n" * args.visitors)

    with harness.Server("baseline:app", env, work / "baseline.log") as base:
        baseline = harness.run_client("get", base.url, str(paths), str(args.visitors))
    with harness.Server("wsgi:app", env, work / "store.log") as store:
        result = harness.run_client("get", store.url, str(paths), str(args.visitors))

    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "bench"})
    with app.app_context():
        stock = db.session.get(Stock, (SKU, "booth"))
        on_hand, reserved = stock.on_hand, stock.reserved
        active = db.session.scalar(
            select(func.count(Hold.id)).where(Hold.status == "active", Hold.sku == SKU)
        )
        with_session = db.session.scalar(
            select(func.count(Hold.id)).where(Hold.checkout_session_id.is_not(None))
        )
        db.session.remove()
        db.engine.dispose()

    statuses = result["statuses"]
    sessions = statuses.get("303", 0)
    sold_out = statuses.get("409", 0)
    harness.save(
        "drop",
        {
            "visitors": args.visitors,
            "units": args.units,
            "sessions_created": sessions,
            "sold_out_answers": sold_out,
            "other_answers": {k: v for k, v in statuses.items() if k not in ("303", "409")},
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "max_ms": result["max_ms"],
            "wall_s": result["wall_s"],
            "baseline_p50_ms": baseline["p50_ms"],
            "baseline_p99_ms": baseline["p99_ms"],
            "baseline_wall_s": baseline["wall_s"],
            "ratio": round(baseline["wall_s"] / result["wall_s"], 3),
            "on_hand": on_hand,
            "reserved": reserved,
            "active_holds": active,
            "holds_with_session": with_session,
            "invariant_ok": (
                sessions == args.units
                and sold_out == args.visitors - args.units
                and reserved == active == with_session == args.units
                and on_hand == args.units
            ),
        },
    )


if __name__ == "__main__":
    main()
