"""`make bench`: run every benchmark, then write bench/RESULTS.md from their figures.

The three benchmarks of the issue (webhook, drop, stream) save their figures as JSON for
the table; any other script in bench/ runs too, and the tail of its output is kept.
"""

from __future__ import annotations

import subprocess
import sys

import harness
import report

BENCHMARKS = ("webhook", "drop", "stream")
NOT_BENCHMARKS = {"harness", "client", "baseline", "report", "run"}


def main() -> int:
    harness.RESULTS.mkdir(exist_ok=True)
    failures: dict[str, str] = {}
    extras: dict[str, str] = {}
    others = sorted(
        p.stem
        for p in harness.BENCH.glob("*.py")
        if p.stem not in NOT_BENCHMARKS and p.stem not in BENCHMARKS
    )
    for name in (*BENCHMARKS, *others):
        print(f"== bench/{name}.py", flush=True)
        (harness.RESULTS / f"{name}.json").unlink(missing_ok=True)
        done = subprocess.run(
            [harness.PYTHON, str(harness.BENCH / f"{name}.py")],
            capture_output=True,
            text=True,
        )
        print(done.stdout, flush=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            failures[name] = f"exited {done.returncode}: {last}"
            print(done.stderr, file=sys.stderr)
        elif name in others:
            extras[name] = "\n".join(done.stdout.strip().splitlines()[-15:])
    print(report.main(failures, extras))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
