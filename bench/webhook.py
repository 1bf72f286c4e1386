"""Webhook throughput: wrk sends distinct, pre-signed checkout.session.completed events.

Each run starts on a fresh SQLite file (WAL, synchronous=FULL, as the booth runs it) and
measures three endpoints under the tree's gunicorn.conf.py with the same wrk settings:
a bare endpoint that reads the body and answers 200, one that only checks the signature
(construct_event), and the store's /stripe/webhook. Then the store's result is checked:
events the run sent but the server never answered (cut off when wrk stopped) are
redelivered as Stripe would, a sample is resent, and every event must be recorded once,
with one sale and one stock take each, and the units left must match.

    python bench/webhook.py [--tree DIR] [--runs 3] [--duration 10] [--connections 64]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

import events
import harness

LUA = str(harness.BENCH / "webhook.lua")


def wrk(url: str, signed: Path, duration: int, connections: int) -> dict:
    """Run wrk with bench/webhook.lua and return the JSON line its done() prints."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "30s"]
    out = subprocess.run([*cmd, "-s", LUA, url, "--", str(signed)], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(server: harness.Server, route: str, batch: list[dict], args, work: Path) -> dict:
    """Send the batch's events (signed now) for --duration s; return wrk's and CPU figures."""
    signed = events.write_signed(work / "events.tsv", batch)
    cpu = server.cpu_seconds()
    wrk_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = wrk(server.url + route, signed, args.duration, args.connections)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    answered = max(1, figures["answered"])
    ok = figures["answered"] - figures["status_4xx_5xx"]
    figures["per_s"] = round(ok / figures["duration_s"], 1)
    figures["server_cpu_ms"] = round((server.cpu_seconds() - cpu) / answered * 1000, 3)
    wrk_s = after.ru_utime + after.ru_stime - wrk_cpu.ru_utime - wrk_cpu.ru_stime
    figures["wrk_cpu_ms"] = round(wrk_s / answered * 1000, 3)
    return figures


def fsync_ms(directory: Path, rounds: int = 50) -> float:
    """Return the median time of one 4 KiB write + fsync: the floor of a durable commit."""
    path = directory / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return round(harness.percentile(times, 50) * 1000, 3)


def check(server: harness.Server, db: Path, sent: list[dict], stock: int) -> dict:
    """Redeliver what was never answered, resend a sample; return the exactly-once figures."""
    time.sleep(2)  # requests wrk left in flight finish
    seen = set(harness.column(db, "SELECT id FROM stripe_event"))
    missing = [e for e in sent if e["id"] not in seen]
    url = server.url + "/stripe/webhook"
    redelivered = [events.post(url, e) for e in missing]
    before = harness.scalar(db, "SELECT count(*) FROM stripe_event")
    resent = [events.post(url, e) for e in sent[:: max(1, len(sent) // 200)][:200]]
    q = {
        "recorded": "SELECT count(*) FROM stripe_event",
        "applied": "SELECT count(*) FROM stripe_event WHERE outcome = 'applied'",
        "fulfilled_sales": "SELECT count(*) FROM sale WHERE status = 'fulfilled'",
        "stock_takes": "SELECT count(*) FROM stock_event WHERE reason = 'sale'",
        "units_left": "SELECT sum(on_hand) FROM stock",
    }
    figures = {name: harness.scalar(db, sql) for name, sql in q.items()}
    # Anything recorded but not applied, by outcome and type: empty when all is well.
    others = "SELECT outcome || ' ' || type, count(*) FROM stripe_event WHERE outcome != 'applied'"
    figures["not_applied"] = dict(harness.rows(db, others + " GROUP BY 1"))
    n = len(sent)
    return {
        "sent": n,
        "redelivered": len(missing),
        "redelivered_not_200": sum(s != 200 for s in redelivered),
        "resent": len(resent),
        "resent_not_200": sum(s != 200 for s in resent),
        "resent_changed_anything": figures["recorded"] != before,
        **figures,
        "units_expected_left": stock * events.ITEMS - n,
        "exactly_once": (
            figures["recorded"] == figures["applied"] == figures["fulfilled_sales"] == n
            and figures["stock_takes"] == n
            and figures["units_left"] == stock * events.ITEMS - n
            and figures["recorded"] == before
        ),
    }


def one_run(tree: harness.Tree, args, work: Path) -> dict:
    """Measure the two baselines and the store on a fresh database; check the store after."""
    db = work / "swagstore.sqlite"
    env = harness.store_env(db, STRIPE_WEBHOOK_SECRET=events.SECRET, STORE_ID=events.STORE)
    warmup = [events.completed(i) for i in range(2000)]
    batch = [events.completed(i) for i in range(args.events)]
    stock = (len(warmup) + len(batch)) // events.ITEMS + 10
    tree.flask(env, "init-db")
    tree.flask(env, "load-catalog", str(events.catalog(work / "catalog.toml", stock)))

    with harness.Server(tree, "baseline:app", env, work / "baseline.log") as base:
        wrk(base.url + "/stripe/webhook", events.write_signed(work / "w.tsv", warmup), 1, 8)
        bare = measure(base, "/stripe/webhook", batch, args, work)
        verified = measure(base, "/verified/stripe/webhook", batch, args, work)
    with harness.Server(tree, "wsgi:app", env, work / "store.log") as store:
        w = wrk(store.url + "/stripe/webhook", events.write_signed(work / "w.tsv", warmup), 1, 8)
        result = measure(store, "/stripe/webhook", batch, args, work)
        sent = warmup[: w["issued"]] + batch[: result["issued"]]
        correctness = check(store, db, sent, stock)
    if result["wraps"]:
        print(f"note: the store's run outlasted {args.events} events; raise --events")
    run = {
        "store_per_s": result["per_s"],
        "bare_per_s": bare["per_s"],
        "verified_per_s": verified["per_s"],
        "ratio_bare": round(result["per_s"] / bare["per_s"], 3),
        "ratio_verified": round(result["per_s"] / verified["per_s"], 3),
        "store_p50_ms": result["p50_ms"],
        "store_p99_ms": result["p99_ms"],
        "bare_p50_ms": bare["p50_ms"],
        "bare_p99_ms": bare["p99_ms"],
        "verified_p50_ms": verified["p50_ms"],
        "verified_p99_ms": verified["p99_ms"],
        "store_cpu_ms": result["server_cpu_ms"],
        "bare_cpu_ms": bare["server_cpu_ms"],
        "verified_cpu_ms": verified["server_cpu_ms"],
        "wrk_cpu_ms": result["wrk_cpu_ms"],
        "store_errors": result["status_4xx_5xx"] + result["socket_errors"] + result["timeouts"],
        "fsync_ms": fsync_ms(work),
        "load_average": harness.load_average(),
        **correctness,
    }
    print(json.dumps(run), flush=True)
    return {**run, "wrk": {"store": result, "bare": bare, "verified": verified}}


def main() -> None:
    args = harness.arguments(__doc__, duration=10, connections=64, events=40000)
    if args.duration > events.MAX_RUN_S:
        raise SystemExit(f"--duration must stay under {events.MAX_RUN_S} s: signatures expire")
    tree = harness.Tree(args.tree)
    runs = []
    for _ in range(args.runs):
        with harness.workdir("webhook") as work:
            runs.append(one_run(tree, args, work))
    harness.save(
        args.out,
        "webhook",
        tree,
        {
            "duration_s": args.duration,
            "connections": args.connections,
            "exactly_once": all(r["exactly_once"] for r in runs),
            **harness.spread(runs),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
