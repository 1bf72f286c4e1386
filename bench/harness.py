"""What every benchmark shares: the tree under test, its gunicorn server, figures, results.

The benchmarks themselves use only the standard library, so any Python 3.11 runs them;
the server runs from the tree given with --tree (default: this checkout), with that tree's
own .venv, so the same scripts measure another commit (a `git worktree` of it) too.
Benchmarks are programs, not tests: they print figures, never pass or fail on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


class Tree:
    """A checkout of the store with its own .venv (`make install` in it)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).resolve()
        self.python = str(self.path / ".venv" / "bin" / "python")
        if not Path(self.python).exists():
            raise SystemExit(f"{self.python} is missing: run `make install` in {self.path}")

    @cached_property
    def commit(self) -> str:
        """Return the tree's commit (short hash), with '+' if it has uncommitted changes."""
        git = ["git", "-C", str(self.path)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "swagstore"]).returncode
        return head.stdout.decode().strip() + ("+" if dirty else "")

    @cached_property
    def has_worker(self) -> bool:
        """Say whether this tree runs its background jobs in `flask worker` (the new runtime)."""
        probe = [self.python, "-m", "flask", "--app", "swagstore", "worker", "--help"]
        return subprocess.run(probe, cwd=self.path, capture_output=True).returncode == 0

    def flask(self, env: dict[str, str], *args: str) -> None:
        """Run one `flask --app swagstore` command of this tree."""
        cmd = [self.python, "-m", "flask", "--app", "swagstore", *args]
        subprocess.run(cmd, cwd=self.path, env=env, check=True, stdout=subprocess.DEVNULL)


def arguments(doc: str, **defaults: Any) -> argparse.Namespace:
    """Parse a benchmark's options: --tree, --runs, --out and its own (name=default)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tree", default=str(BENCH.parent), help="checkout to measure")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, each on a fresh server")
    parser.add_argument("--out", default=str(RESULTS), help="where the JSON figures go")
    for name, value in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return parser.parse_args()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Return the p-th percentile (nearest rank) of values, or 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def spread(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return, for each numeric figure of the runs, its median, min and max over the runs."""
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in runs]
            out[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return out


@contextmanager
def workdir(name: str) -> Iterator[Path]:
    """Give one run a fresh temporary directory for its database and logs; remove it after."""
    path = Path(tempfile.mkdtemp(prefix=f"swagstore-bench-{name}-"))
    yield path  # a run that raises leaves it, logs and all, to look at
    shutil.rmtree(path)


def store_env(db: Path, **config: str) -> dict[str, str]:
    """Return the environment a store server reads its config from (SWAGSTORE_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
    env["SWAGSTORE_SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{db}"
    # The sandbox's own file beside it, never the tree's instance/sandbox.sqlite: events left
    # there by `make dev` or another script would be delivered into the measured run.
    env["SWAGSTORE_SANDBOX_DATABASE"] = str(db.with_name("sandbox.sqlite"))
    env["SWAGSTORE_SECRET_KEY"] = "bench-secret-key"
    env.update({"SWAGSTORE_" + k: v for k, v in config.items()})
    return env


def rows(db: Path, sql: str, *params: Any) -> list[tuple]:
    """Return the rows of a query on the store's SQLite file, opened read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def column(db: Path, sql: str, *params: Any) -> list[Any]:
    """Return the first column of a query's rows."""
    return [row[0] for row in rows(db, sql, *params)]


def scalar(db: Path, sql: str, *params: Any) -> Any:
    """Return the first column of a query's first row, or None."""
    found = rows(db, sql, *params)
    return found[0][0] if found else None


class Server:
    """A tree's WSGI app under gunicorn with the tree's gunicorn.conf.py, as `make run` starts it.

    For the store (wsgi:app) of a tree that has a background worker, the worker runs too:
    the booth runs both, so both count in the server's CPU time. A baseline (any other
    app, from bench/) gets the same settings without the store's hooks.
    """

    def __init__(
        self, tree: Tree, app: str, env: dict[str, str], log: Path, **overrides: str
    ) -> None:
        self.tree, self.app, self.env, self.log = tree, app, env, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.overrides = overrides
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, cmd: list[str]) -> None:
        with open(self.log, "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=self.tree.path,
                    env=self.env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )  # fmt: skip
            )

    def __enter__(self) -> Server:
        python = self.tree.python
        if self.app == "wsgi:app" and self.tree.has_worker:
            self._start([python, "-m", "flask", "--app", "swagstore", "worker"])
        conf = str(self.tree.path / "gunicorn.conf.py")
        if self.app != "wsgi:app":
            self.env = {**self.env, "BENCH_TREE_GUNICORN_CONF": conf}
            conf = str(BENCH / "baseline_gunicorn.py")
        cmd = [python, "-m", "gunicorn", "-c", conf]
        cmd += ["--bind", f"127.0.0.1:{self.port}", "--pythonpath", str(BENCH)]
        for option, value in self.overrides.items():
            cmd += [f"--{option.replace('_', '-')}", value]
        self._start([*cmd, self.app])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                self.__exit__()
                raise RuntimeError(f"{self.app} exited early; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"{self.app} did not answer /healthz in 60 s; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.procs = []

    def cpu_seconds(self) -> float:
        """Return the CPU time (user + system) the server's processes have used so far."""
        groups = {p.pid for p in self.procs}
        total = 0.0
        for entry in os.listdir("/proc"):
            try:
                if not entry.isdigit() or os.getpgid(int(entry)) not in groups:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (ProcessLookupError, FileNotFoundError):
                continue  # ended meanwhile
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
        return total / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    """Return the 1-minute load average: other work on the machine shows here."""
    return round(os.getloadavg()[0], 2)


def save(out: str, name: str, tree: Tree, figures: dict[str, Any]) -> None:
    """Write one benchmark's figures where `bench/report.py` finds them."""
    figures = {
        "name": name,
        "tree": str(tree.path),
        "commit": tree.commit,
        "worker": tree.has_worker,
        "cores": os.cpu_count(),
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **figures,
    }
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {path}")
