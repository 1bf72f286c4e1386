"""The drop: N visitors at once for 100 units, in hold mode (reserved_checkout).

Each run starts the store on a fresh SQLite file in PURCHASE_MODE=reserved_checkout
against its offline sandbox, with one item of --units units. At one start line every
visitor opens its own connection and asks `GET /buy/<sku>`: a hold and a Checkout
Session (303 to it) or a sold-out page (409). Then the invariant: exactly --units
sessions and active holds, the stock's reserved units equal to them, nothing sold. The
baseline is a bare page under the same gunicorn settings, driven the same way.

    python bench/drop.py [--tree DIR] [--runs 3] [--visitors 5000] [--units 100]
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections import Counter
from pathlib import Path

import harness

SKU = "drop-tee"


async def visit(port: int, path: str, gate: asyncio.Event) -> tuple[str, float]:
    """Be one visitor: wait for the start, ask once on a new connection; return status, s."""
    await gate.wait()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(120):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            status = (await reader.readline()).split()[1].decode()
            await reader.read()
            writer.close()
    except (OSError, IndexError) as e:  # TimeoutError is an OSError
        status = type(e).__name__
    return status, time.perf_counter() - start


async def crowd(port: int, path: str, visitors: int) -> dict:
    """Send every visitor at once; return the answers, latencies and the time to the last."""
    gate = asyncio.Event()
    tasks = [asyncio.create_task(visit(port, path, gate)) for _ in range(visitors)]
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    gate.set()
    answers = await asyncio.gather(*tasks)
    took = [seconds for _, seconds in answers]
    return {
        "wall_s": round(time.perf_counter() - start, 3),
        "statuses": dict(Counter(status for status, _ in answers)),
        "p50_ms": round(harness.percentile(took, 50) * 1000, 1),
        "p99_ms": round(harness.percentile(took, 99) * 1000, 1),
    }


def one_run(tree: harness.Tree, args, work: Path) -> dict:
    """Run the crowd against the bare page, then the store; check the store's invariant."""
    db = work / "swagstore.sqlite"
    # Every visitor comes from this one machine: a booth's per-address hold caps would turn
    # away all but 4, so they are raised to the crowd (a tree without the caps ignores them).
    cap = str(args.visitors)
    env = harness.store_env(
        db,
        PURCHASE_MODE="reserved_checkout",
        STORE_ID="booth",
        HOLDS_PER_CLIENT=cap,
        HOLDS_PER_CLIENT_PER_MINUTE=cap,
    )
    catalog = work / "catalog.toml"
    catalog.write_text(
        f'[[item]]\nsku = "{SKU}"\nname = "Drop tee"\nprice = 3000\n'
        f'currency = "usd"\nstock = {args.units}\n'
    )
    tree.flask(env, "init-db")
    tree.flask(env, "load-catalog", str(catalog))
    with harness.Server(tree, "baseline:app", env, work / "baseline.log") as base:
        bare = asyncio.run(crowd(base.port, f"/buy/{SKU}", args.visitors))
    with harness.Server(tree, "wsgi:app", env, work / "store.log") as store:
        result = asyncio.run(crowd(store.port, f"/buy/{SKU}", args.visitors))

    on_hand, reserved = harness.rows(db, "SELECT on_hand, reserved FROM stock WHERE sku = ?", SKU)[
        0
    ]
    holds = harness.scalar(db, "SELECT count(*) FROM hold WHERE status = 'active'")
    with_session = harness.scalar(
        db, "SELECT count(*) FROM hold WHERE checkout_session_id IS NOT NULL"
    )
    sessions = result["statuses"].get("303", 0)
    sold_out = result["statuses"].get("409", 0)
    run = {
        "wall_s": result["wall_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "bare_wall_s": bare["wall_s"],
        "bare_p50_ms": bare["p50_ms"],
        "bare_p99_ms": bare["p99_ms"],
        "ratio": round(bare["wall_s"] / result["wall_s"], 3),
        "sessions": sessions,
        "sold_out": sold_out,
        "other_answers": {k: v for k, v in result["statuses"].items() if k not in ("303", "409")},
        "bare_answers": bare["statuses"],
        "on_hand": on_hand,
        "reserved": reserved,
        "active_holds": holds,
        "holds_with_session": with_session,
        "invariant_ok": (
            sessions == holds == with_session == reserved == on_hand == args.units
            and sold_out == args.visitors - args.units
        ),
        "load_average": harness.load_average(),
    }
    print(json.dumps(run), flush=True)
    return run


def main() -> None:
    args = harness.arguments(__doc__, visitors=5000, units=100)
    # One socket per visitor, all at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.visitors + 100)), hard))
    tree = harness.Tree(args.tree)
    runs = []
    for _ in range(args.runs):
        with harness.workdir("drop") as work:
            runs.append(one_run(tree, args, work))
    harness.save(
        args.out,
        "drop",
        tree,
        {
            "visitors": args.visitors,
            "units": args.units,
            "invariant_ok": all(r["invariant_ok"] for r in runs),
            **harness.spread(runs),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
