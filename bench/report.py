"""Write bench/RESULTS.md from the figures in bench/results/*.json (see bench/run.py)."""

from __future__ import annotations

import json
import os
import platform
import time

import harness

OUT = harness.BENCH / "RESULTS.md"


def load(name: str) -> dict | None:
    path = harness.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(failures: dict[str, str] | None = None, extras: dict[str, str] | None = None) -> str:
    """Write RESULTS.md and return its text."""
    failures = failures or {}
    extras = extras or {}
    w, d, s = load("webhook"), load("drop"), load("stream")
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
        "SQLite (WAL, synchronous=FULL), gunicorn with the booth's gunicorn.conf.py. "
        "Client and server share the machine. Each baseline is a bare Flask endpoint under "
        "the same gunicorn settings, driven by the same client in the same run "
        "(bench/baseline.py).",
        "",
        "Load average (1 min) when each finished, from other work on the machine: "
        + ", ".join(f"{r['name']} {r.get('load_average_1m', '?')}" for r in (w, d, s) if r)
        + ".",
        "",
        "| benchmark | store | baseline | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    if w:
        lines.append(
            f"| webhook: {w['events']} signed events, {w['concurrency']} connections | "
            f"{w['store_per_s']:.0f} applied/s, p50 {w['store_p50_ms']} ms, "
            f"p99 {w['store_p99_ms']} ms, {w['errors']} answered 5xx (retried) | "
            f"{w['baseline_per_s']:.0f}/s, p50 {w['baseline_p50_ms']} ms, "
            f"p99 {w['baseline_p99_ms']} ms | "
            f"**{w['ratio']:.2f}** (store ÷ baseline throughput); a bare endpoint that "
            f"only checks the signature with construct_event: {w['verify_only_per_s']:.0f}/s, "
            f"{w['verify_only_ratio']:.2f} | ≥ 0.5; "
            f"{w['lost']} lost, {w['double_applied']} double-applied |"
        )
    if d:
        lines.append(
            f"| drop: {d['visitors']} visitors at once, {d['units']} units | "
            f"{d['sessions_created']} sessions, {d['sold_out_answers']} sold out, "
            f"other {d['other_answers'] or 'none'}; p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, "
            f"all answered in {d['wall_s']} s | "
            f"p50 {d['baseline_p50_ms']} ms, p99 {d['baseline_p99_ms']} ms, "
            f"{d['baseline_wall_s']} s | **{d['ratio']:.2f}** (baseline ÷ store time) | "
            f"invariant {'holds' if d['invariant_ok'] else 'BROKEN'} |"
        )
    if s:
        b = s["baseline"]
        lines.append(
            f"| stream: {s['clients']} clients, one sale | "
            f"{s['got_event']} of {s['live']} live clients got it; p50 {s['p50_ms']} ms, "
            f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms (median of {len(s.get('runs', [1]))} "
            f"runs; p99 of each: {_p99s(s)}); {s['memory_per_client_kib']} KiB/client | "
            f"{b['got_event']} of {b['live']}; p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms "
            f"(p99 of each: {_p99s(b)}), "
            f"{b['memory_per_client_kib']} KiB/client | **{s['p99_ratio']:.2f}** "
            f"(store ÷ baseline p99 delay) | p99 < 100 ms at 1,000 |"
        )
    for name, why in failures.items():
        if name in ("webhook", "drop", "stream"):
            lines.append(f"| {name} | not measured: {why} | | | |")
        else:
            extras[name] = f"failed: {why}"
    lines += ["", "## Notes", ""]
    if w:
        lines.append(
            "- webhook: each server process applies the events its requests hand in as one "
            "transaction per batch (group commit, swagstore/group_commit.py), durable "
            "(synchronous=FULL) before any of them is answered; a 4 KiB write + fsync took "
            f"{w.get('fsync_ms', '?')} ms (median) on this disk in the same run. The servers "
            f"used {w.get('store_cpu_ms_per_event', '?')} ms of CPU per event against the "
            f"baseline's {w.get('baseline_cpu_ms_per_event', '?')} ms per request: signature "
            "check and Stripe object, the transaction's statements, and the hand-over to the "
            "writer thread (see bench/webhook_cost.py below). "
            f"First answers: {w.get('error_statuses')}; a 5xx (the database stayed locked "
            "past busy_timeout) means 'not applied, try again', so those events were "
            f"redelivered as Stripe would ({w.get('redelivered_after_5xx')} redeliveries). "
            f"{w['sent']} events sent in all (warm-up included), "
            f"{w['applied']} recorded as applied, {w['fulfilled_sales']} fulfilled sales, "
            f"{w['stock_takes']} stock takes; {w['units_left']} units left of "
            f"{w['units_expected_left']} expected. {w['resent']} events resent: "
            f"{w['resent_answered_200']} answered 200 and nothing changed."
        )
    if d:
        lines.append(
            f"- drop: stock after the drop on_hand {d['on_hand']}, reserved {d['reserved']}; "
            f"{d['active_holds']} active holds, {d['holds_with_session']} with a Checkout "
            "Session."
        )
    if s:
        lines.append(
            f"- stream: {s['workers']} workers x {s['threads_per_worker']} threads (one "
            f"thread per open stream); client failures {s['failures'] or 'none'}. Delay is "
            "from the sale's stock_event row being written (just before its commit) to the "
            "client having the event; the baseline's from its signal being written."
        )
    for name, output in extras.items():
        lines += ["", f"### bench/{name}.py (its own output)", "", "```", output, "```"]
    lines += ["", closing(w, d, s), ""]
    text = "\n".join(lines)
    OUT.write_text(text)
    return text


def _p99s(result: dict) -> str:
    runs = result.get("runs") or [result]
    return ", ".join(f"{r['p99_ms']} ms" for r in runs)


def closing(w: dict | None, d: dict | None, s: dict | None) -> str:
    parts = []
    if w:
        verdict = "meets" if w["ratio"] >= 0.5 else "misses"
        parts.append(
            f"the webhook path applies {w['store_per_s']:.0f} events/s against a bare "
            f"endpoint's {w['baseline_per_s']:.0f}/s, a ratio of {w['ratio']:.2f}, which "
            f"{verdict} the 0.5 goal, with {w['lost']} lost and {w['double_applied']} "
            "double-applied events"
        )
    if d:
        parts.append(
            f"the drop gave {d['sessions_created']} sessions and {d['sold_out_answers']} "
            f"sold-out answers to {d['visitors']} visitors (time ratio {d['ratio']:.2f} "
            f"against the baseline), invariant {'held' if d['invariant_ok'] else 'BROKEN'}"
        )
    if s:
        verdict = "meets" if s["p99_ms"] < 100 and s["clients"] >= 1000 else "misses"
        parts.append(
            f"{s['got_event']} stream clients had the sale at p99 {s['p99_ms']} ms "
            f"(the median of {len(s.get('runs', [1]))} runs, p99 of each: {_p99s(s)}; "
            f"{s['p99_ratio']:.2f} x the baseline's p99), which {verdict} the 100 ms goal"
        )
    if not parts:
        return "Closing note: nothing was measured."
    return "Closing note: " + "; ".join(parts) + "."


if __name__ == "__main__":
    print(main())
