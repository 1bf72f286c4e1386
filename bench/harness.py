"""What every benchmark shares: a gunicorn server as the booth runs it, a client process,
percentiles, and the results file that `make bench` turns into RESULTS.md.

Benchmarks are programs, not tests: they print figures and write them to
bench/results/<name>.json, and never decide pass or fail on a time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# Benchmarks run as scripts; the drivers import the app from this checkout.
sys.path.insert(0, str(ROOT))
RESULTS = BENCH / "results"
PYTHON = sys.executable


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
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fsync_ms(directory: Path, rounds: int = 50) -> float:
    """Return the median time of one 4 KiB write + fsync in directory: a durable commit's floor."""
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
    return round(percentile(times, 50) * 1000, 2)


def workdir(name: str) -> Path:
    """Return a fresh temporary directory for one benchmark's database and logs."""
    return Path(tempfile.mkdtemp(prefix=f"swagstore-bench-{name}-"))


def store_env(db_uri: str, **config: str) -> dict[str, str]:
    """Return the environment a booth server reads its config from (SWAGSTORE_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
    env["SWAGSTORE_SQLALCHEMY_DATABASE_URI"] = db_uri
    env["SWAGSTORE_SECRET_KEY"] = "bench-secret-key"
    env.update({"SWAGSTORE_" + k: v for k, v in config.items()})
    return env


def flask(env: dict[str, str], *args: str) -> None:
    """Run one `flask --app swagstore` command against the benchmark's database."""
    subprocess.run(
        [PYTHON, "-m", "flask", "--app", "swagstore", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


class Server:
    """A WSGI app under gunicorn with the booth's gunicorn.conf.py, in its own process group."""

    def __init__(self, app: str, env: dict[str, str], log: Path, **overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.env = env
        self.log = log
        self.overrides = overrides
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        cmd = [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
        cmd += ["--bind", f"127.0.0.1:{self.port}", "--pythonpath", str(BENCH)]
        for option, value in self.overrides.items():
            cmd += [f"--{option.replace('_', '-')}", value]
        cmd.append(self.app)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.app} exited with {self.proc.returncode}; see {self.log}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.app} did not answer /healthz in 60 s; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    def cpu_seconds(self) -> float:
        """Return the CPU time (user + system) the server's processes have used so far."""
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in _group(self.proc.pid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def rss_bytes(self) -> int:
        """Return the resident memory of the server's processes (master and workers)."""
        assert self.proc is not None
        total = 0
        for pid in _group(self.proc.pid):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except FileNotFoundError:
                continue
        return total


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except ProcessLookupError:
                continue
    return pids


def run_client(*args: str, timeout: float = 900) -> dict[str, Any]:
    """Run bench/client.py in its own process and return the JSON it prints."""
    out = subprocess.run(
        [PYTHON, str(BENCH / "client.py"), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return json.loads(out.stdout)


def save(name: str, figures: dict[str, Any]) -> None:
    """Write one benchmark's figures where `bench/report.py` finds them."""
    RESULTS.mkdir(exist_ok=True)
    figures = {
        "name": name,
        "cores": os.cpu_count(),
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Other work on the machine shows here: the benchmarks do not own the cores.
        "load_average_1m": round(os.getloadavg()[0], 1),
        **figures,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
