"""Slow clients against the booth as `make public` runs it: does it keep selling?

An attacker on the network holds SLOW_BODY connections that send a request body at one
byte a second and SLOW_HEADER that send their headers as slowly, reconnecting whenever
the server drops one, spread over several client addresses (127.0.1.x: all of
127.0.0.0/8 is this machine). Meanwhile Stripe posts a signed webhook (one sale) every
second, and the booth's kiosk (127.0.0.1) follows /stream. Figures: each webhook's
answer time, /api/stock's and the kiosk page's, whether the kiosk saw every count and
how late, and what the attack did (connections opened, dropped by the server).

    python bench/attack.py                    # starts the set-up itself, 60 s of attack
    python bench/attack.py --direct           # the same, at gunicorn with no proxy
    python bench/attack.py --url URL --secret whsec_... --seconds 15 --json
                                              # a set-up already running (the tests)

Standard library only, like the other benchmarks; it prints figures and never fails on
a time (tests/test_public.py asserts on them).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


# The attacker ------------------------------------------------------------------------------


class Attack:
    """Slow connections held open for as long as it runs, reopened when dropped."""

    def __init__(self, port: int, slow_body: int, slow_header: int, sources: list[str]) -> None:
        self.port = port
        self.slow_body = slow_body
        self.slow_header = slow_header
        self.sources = sources
        self.opened = 0
        self.dropped = 0  # closed (or refused) by the server
        self.open = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Attack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        jobs = [
            self._hold(
                n,
                b"POST /stripe/webhook HTTP/1.1\r\nHost: booth\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
            )
            for n in range(self.slow_body)
        ] + [
            self._hold(n, b"GET /api/stock HTTP/1.1\r\nHost: booth\r\nX-Slow: ")
            for n in range(self.slow_body, self.slow_body + self.slow_header)
        ]
        await asyncio.gather(*jobs)

    async def _hold(self, n: int, opening: bytes) -> None:
        source = self.sources[n % len(self.sources)]
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(source, 0)
                )
            except OSError:
                self.dropped += 1
                await asyncio.sleep(0.5)
                continue
            self.opened += 1
            self.open += 1
            self.peak = max(self.peak, self.open)
            closed = asyncio.ensure_future(_until_closed(reader))
            try:
                writer.write(opening)
                while not self._stop.is_set() and not closed.done():
                    await writer.drain()
                    await asyncio.sleep(1)
                    writer.write(b"x")  # one byte a second
            except OSError:
                pass
            finally:
                self.open -= 1
                if not self._stop.is_set():
                    self.dropped += 1
                closed.cancel()
                writer.close()

    def figures(self) -> dict[str, Any]:
        return {
            "slow_body": self.slow_body,
            "slow_header": self.slow_header,
            "client_addresses": len(self.sources),
            "connections_opened": self.opened,
            "dropped_by_server": self.dropped,
            "open_at_peak": self.peak,
        }


async def _until_closed(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass


# The booth's side: its kiosk and Stripe -----------------------------------------------------


class Kiosk:
    """The booth's screen: follows /stream from 127.0.0.1 and notes when each count arrives."""

    def __init__(self, url: str, sku: str) -> None:
        self.url = urlsplit(url)
        self.sku = sku
        self.seen: dict[int, float] = {}  # available -> when it first arrived
        self.first: int | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._conn: http.client.HTTPConnection | None = None

    def start(self, timeout: float = 30) -> Kiosk:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.first is None:
            if time.monotonic() > deadline:
                raise SystemExit("the kiosk got no snapshot from /stream")
            time.sleep(0.05)
        return self

    def _follow(self) -> None:
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=120)
        self._conn = conn
        conn.request("GET", "/stream", headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        try:
            for raw in response:
                line = raw.decode().rstrip("\n")
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[6:])
                if data["sku"] != self.sku:
                    continue
                self.seen.setdefault(data["available"], time.monotonic())
                if self.first is None:
                    self.first = data["available"]
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.shutdown(socket.SHUT_RDWR)


def signed_event(sku: str, store: str, secret: str, n: int) -> tuple[bytes, str]:
    """Return a checkout.session.completed for one unit, and its Stripe-Signature."""
    tag = f"{os.getpid()}x{time.time_ns():x}x{n}"
    event = {
        "id": f"evt_attack_{tag}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"cs_attack_{tag}",
                "object": "checkout.session",
                "status": "complete",
                "payment_status": "paid",
                "amount_total": 2500,
                "currency": "usd",
                "payment_intent": f"pi_attack_{tag}",
                "metadata": {"sku": sku, "store": store},
            }
        },
    }
    body = json.dumps(event).encode()
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"


def timed(request: urllib.request.Request, timeout: float = 60) -> tuple[int, float]:
    """Return a request's status and how long its answer took."""
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0  # no answer at all (timed out, refused)
    return status, time.monotonic() - began


def measure(args: argparse.Namespace, attack_port: int) -> dict[str, Any]:
    """Attack for args.seconds while Stripe and the kiosk go on; return the figures."""
    kiosk = Kiosk(args.url, args.sku).start()
    sources = [f"127.0.1.{n}" for n in range(1, args.sources + 1)]
    attack = Attack(attack_port, args.slow_body, args.slow_header, sources).start()
    ramp = time.monotonic() + 10
    while attack.open < 0.9 * (args.slow_body + args.slow_header) and time.monotonic() < ramp:
        time.sleep(0.1)
    webhooks: list[tuple[int, float, float]] = []  # status, seconds, answered at
    pages: dict[str, list[float]] = {"/api/stock": [], "/": []}
    failed = dict.fromkeys(pages, 0)
    statuses: dict[str, int] = {}
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        round_began = time.monotonic()
        body, signature = signed_event(args.sku, args.store, args.secret, n)
        request = urllib.request.Request(
            args.url + "/stripe/webhook",
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        )
        status, seconds = timed(request, args.timeout)
        webhooks.append((status, seconds, time.monotonic()))
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        n += 1
        for path in pages:
            page_status, page_seconds = timed(
                urllib.request.Request(args.url + path), args.timeout
            )
            pages[path].append(page_seconds)
            failed[path] += page_status != 200
        time.sleep(max(0.0, args.every - (time.monotonic() - round_began)))
    held = attack.open
    attack.stop()
    applied = [answered for status, _, answered in webhooks if status == 200]
    wanted = [kiosk.first - k for k in range(1, len(applied) + 1)] if kiosk.first else []
    deadline = time.monotonic() + 20
    while not all(c in kiosk.seen for c in wanted) and time.monotonic() < deadline:
        time.sleep(0.1)
    kiosk.close()
    lags = [kiosk.seen[c] - at for c, at in zip(wanted, applied, strict=True) if c in kiosk.seen]
    times = [seconds for _, seconds, _ in webhooks]
    return {
        "seconds": args.seconds,
        "target": "gunicorn, no proxy" if args.direct else "nginx in front of gunicorn",
        "attack": {**attack.figures(), "open_at_end": held},
        "webhooks": {
            "sent": len(webhooks),
            "statuses": statuses,
            "p50_s": round(statistics.median(times), 3) if times else None,
            "max_s": round(max(times), 3) if times else None,
        },
        "pages": {
            path: {"max_s": round(max(v), 3) if v else None, "not_200": failed[path]}
            for path, v in pages.items()
        },
        "kiosk": {
            "counts_expected": len(wanted),
            "counts_seen": sum(c in kiosk.seen for c in wanted),
            "lag_max_s": round(max(lags), 3) if lags else None,
        },
    }


# Starting the set-up (when no --url is given) ------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def booth(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Run the store as `make public` does (honcho, Procfile.public) on a fresh database."""
    python = str(ROOT / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="swagstore-attack-") as tmp:
        public, direct = free_port(), free_port()
        env = {
            **os.environ,
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
            "SWAGSTORE_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/store.sqlite",
            "SWAGSTORE_SANDBOX_DATABASE": f"{tmp}/sandbox.sqlite",
            "SWAGSTORE_STRIPE_WEBHOOK_SECRET": args.secret,
            "SWAGSTORE_SECRET_KEY": "attack-bench",
            "SWAGSTORE_BIND": f"127.0.0.1:{direct}",
            "PUBLIC_PORT": str(public),
            "NGINX_DIR": f"{tmp}/nginx",
            "SWAGSTORE_PROXY_HOPS": "1",
            "GUNICORN_CMD_ARGS": "--access-logfile /dev/null",
        }
        catalog = Path(tmp) / "catalog.toml"
        catalog.write_text(
            f'[[item]]\nsku = "{args.sku}"\nname = "Tee"\nprice = 2500\n'
            f'currency = "usd"\nstock = 100000\n'
        )
        flask = [python, "-m", "flask", "--app", "swagstore"]
        subprocess.run([*flask, "init-db"], cwd=ROOT, env=env, check=True, capture_output=True)
        subprocess.run(
            [*flask, "load-catalog", str(catalog)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        proc = subprocess.Popen(
            [python, "-m", "honcho", "--no-colour", "start", "-f", "Procfile.public"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{public}"
            deadline = time.monotonic() + 60
            while timed(urllib.request.Request(url + "/healthz"), 5)[0] != 200:
                if time.monotonic() > deadline:
                    raise SystemExit("the set-up did not start in 60 s")
                time.sleep(0.2)
            yield url, direct
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running set-up (else one is started)")
    parser.add_argument("--attack-port", type=int, help="where the attack goes (--url's port)")
    parser.add_argument("--direct", action="store_true", help="attack gunicorn, not nginx")
    parser.add_argument("--secret", default="whsec_attack_bench")
    parser.add_argument("--sku", default="tee-m")
    parser.add_argument("--store", default="booth")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--slow-body", type=int, default=150)
    parser.add_argument("--slow-header", type=int, default=150)
    parser.add_argument("--sources", type=int, default=10, help="client addresses 127.0.1.x")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between webhooks")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait per request")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    if args.url:
        figures = measure(args, args.attack_port or urlsplit(args.url).port or 80)
    else:
        with booth(args) as (url, direct):
            args.url = url if not args.direct else f"http://127.0.0.1:{direct}"
            figures = measure(args, urlsplit(args.url).port or 80)
    if args.json:
        print(json.dumps(figures))
        return
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
