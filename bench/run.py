"""`make bench`: run every benchmark against a tree, then write bench/RESULTS.md.

    python bench/run.py [--tree DIR] [--runs 3] [--out DIR] [--before-tree DIR]

--tree is the checkout whose server is measured (default: this one; it needs its .venv).
--before-tree measures an earlier checkout too, each benchmark right before this tree's,
so both meet about the same load from the rest of the machine; its figures go to
OUT/before and RESULTS.md shows them side by side.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import report

BENCHMARKS = ("webhook", "stream", "drop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(harness.BENCH.parent))
    parser.add_argument("--runs", default="3")
    parser.add_argument("--out", default=str(harness.RESULTS))
    parser.add_argument("--before-tree", default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk, the HTTP load generator: sudo apt-get install -y wrk")
    tree = harness.Tree(args.tree)
    out = Path(args.out)
    measured = [(harness.Tree(args.before_tree), out / "before")] if args.before_tree else []
    measured.append((tree, out))
    failed = []
    for name in BENCHMARKS:
        for each, results in measured:
            print(f"== bench/{name}.py against {each.path} ({each.commit})", flush=True)
            (results / f"{name}.json").unlink(missing_ok=True)
            script = str(harness.BENCH / f"{name}.py")
            options = ["--tree", str(each.path), "--runs", args.runs, "--out", str(results)]
            if subprocess.run([sys.executable, script, *options]).returncode != 0:
                failed.append(f"{name} ({each.commit})")
    # Not the runtime: the sandbox's cost in process and over HTTP, in the tree's own Python.
    print("== bench/sandbox_calls.py", flush=True)
    calls = [tree.python, str(harness.BENCH / "sandbox_calls.py"), "--tree", args.tree]
    done = subprocess.run(calls, capture_output=True, text=True)
    print(done.stdout, done.stderr[-2000:], flush=True)
    text = done.stdout if done.returncode == 0 else f"failed: {done.stderr.strip()[-500:]}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sandbox_calls.txt").write_text(text)
    print(report.main(out, out / "before" if args.before_tree else None))
    if failed:
        print(f"failed: {', '.join(failed)} (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
