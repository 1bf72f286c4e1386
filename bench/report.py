"""Write bench/RESULTS.md from the figures of bench/run.py (and of an earlier tree, if given).

python bench/report.py [--out DIR] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import harness

OUT = harness.BENCH / "RESULTS.md"

# (benchmark, figure, label): each row shows the median and the spread of the runs.
ROWS = [
    ("webhook", "store_per_s", "webhook: store, applied events/s"),
    ("webhook", "bare_per_s", "webhook: bare endpoint (reads the body), answers/s"),
    ("webhook", "verified_per_s", "webhook: signature-only endpoint (construct_event), answers/s"),
    ("webhook", "ratio_bare", "webhook: store ÷ bare endpoint"),
    ("webhook", "ratio_verified", "webhook: store ÷ signature-only endpoint"),
    ("webhook", "store_errors", "webhook: store answers other than 2xx (redelivered)"),
    ("webhook", "store_p50_ms", "webhook: store latency p50, ms"),
    ("webhook", "store_p99_ms", "webhook: store latency p99, ms"),
    ("webhook", "bare_p99_ms", "webhook: bare endpoint latency p99, ms"),
    ("webhook", "store_cpu_ms", "webhook: server CPU per event (store), ms"),
    ("webhook", "bare_cpu_ms", "webhook: server CPU per request (bare endpoint), ms"),
    ("webhook", "verified_cpu_ms", "webhook: server CPU per request (signature-only), ms"),
    ("webhook", "wrk_cpu_ms", "webhook: wrk's own CPU per request, ms"),
    ("stream", "one_p50_ms", "stream, 1 screen: sale-to-screen p50, ms"),
    ("stream", "one_max_ms", "stream, 1 screen: max, ms"),
    ("stream", "many_p50_ms", "stream, 200 screens: sale-to-every-screen p50, ms"),
    ("stream", "many_p99_ms", "stream, 200 screens: p99, ms"),
    ("stream", "many_max_ms", "stream, 200 screens: max, ms"),
    ("stream", "ratio_p50", "stream: p50 200 screens ÷ 1 screen"),
    ("drop", "wall_s", "drop: store, last visitor answered after, s"),
    ("drop", "p99_ms", "drop: store /buy p99, ms"),
    ("drop", "bare_wall_s", "drop: bare page, last visitor answered after, s"),
    ("drop", "ratio", "drop: bare ÷ store time"),
]


def load(directory: Path, name: str) -> dict | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cell(result: dict | None, key: str) -> str:
    """Return 'median (min–max)' of one figure, or a dash."""
    if not result or key not in result:
        return "–"
    f = result[key]
    return f"{_num(f['median'])} ({_num(f['min'])}–{_num(f['max'])})"


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def describe(results: dict[str, dict | None]) -> str:
    first = next((r for r in results.values() if r), None)
    if not first:
        return "nothing measured"
    return f"`{first['commit']}` ({'worker' if first['worker'] else 'no worker command'})"


def checks(results: dict[str, dict | None]) -> str:
    w, s, d = results["webhook"], results["stream"], results["drop"]
    parts = []
    if w:
        parts.append(f"webhook exactly once: {'yes' if w['exactly_once'] else 'NO'}")
    if s:
        parts.append(f"stream deliveries missed: {s['missed']}")
    if d:
        parts.append(f"drop invariant: {'holds' if d['invariant_ok'] else 'BROKEN'}")
    return "; ".join(parts) or "–"


def loads(results: dict[str, dict | None]) -> str:
    return "; ".join(
        f"{name} {', '.join(str(r['load_average']) for r in result['runs'])}"
        for name, result in results.items()
        if result
    )


def main(out: Path = harness.RESULTS, before: Path | None = None) -> str:
    """Write RESULTS.md and return its text."""
    names = ("webhook", "stream", "drop")
    now = {n: load(out, n) for n in names}
    old = {n: load(before, n) for n in names} if before else None
    head = ["figure (median of the runs, min–max)", f"this tree: {describe(now)}"]
    if old:
        head.append(f"before: {describe(old)}")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (bench/run.py). {os.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}; SQLite (WAL, synchronous=FULL); gunicorn with "
        "the tree's gunicorn.conf.py; every run on a fresh database and server. The load "
        "generator (wrk, and this process's asyncio clients) shares the machine with the "
        "server, and so does any other work: the load average is noted after every run.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for bench, key, label in ROWS:
        row = [label, cell(now[bench], key)]
        if old:
            row.append(cell(old[bench], key))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| checks | " + checks(now) + (f" | {checks(old)}" if old else "") + " |")
    lines += ["", "Load average (1 min) after each run:", "", f"- this tree: {loads(now)}"]
    if old:
        lines.append(f"- before: {loads(old)}")
    lines += ["", "## Notes", ""]
    if w := now["webhook"]:
        lines.append(
            f"- webhook: each of {len(w['runs'])} runs sends distinct signed events for "
            f"{w['duration_s']} s over "
            f"{w['connections']} connections (wrk, one thread). Server CPU is that of "
            "gunicorn's processes and, when the tree has one, the background worker. A "
            "store answer other than 2xx (503: database busy) counts as an error, and its "
            "event is redelivered before the check, as Stripe would. A durable commit's "
            f"floor, one 4 KiB write + fsync on this disk: {cell(w, 'fsync_ms')} ms."
        )
    if s := now["stream"]:
        lines.append(
            f"- stream: {s['sales']} sales per measurement, 0.2–0.6 s apart; the delay runs "
            "from the sale's stock_event row (written in its transaction, just before the "
            "commit) to the screen having it."
        )
    if d := now["drop"]:
        lines.append(
            f"- drop: {d['visitors']} visitors, {d['units']} units, hold mode against the "
            "sandbox; each visitor opens its own connection at the start line."
        )
    extra = out / "sandbox_calls.txt"
    if extra.exists():
        lines += ["", "### bench/sandbox_calls.py", "", "```", extra.read_text().strip(), "```"]
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(harness.RESULTS))
    parser.add_argument("--before", default=None)
    args = parser.parse_args()
    print(main(Path(args.out), Path(args.before) if args.before else None))
