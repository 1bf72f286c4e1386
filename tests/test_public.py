"""The booth as other machines reach it (`make public`): attacked, it keeps selling.

Every test runs the real set-up (nginx from deploy/, gunicorn on loopback, the worker:
Procfile.public through honcho) and talks to it through nginx, as phones and Stripe do.
Strangers connect from other loopback addresses (tests/public_server.py); the kiosk is
127.0.0.1. Time limits are generous: the machine running the tests is shared.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from public_server import PublicServer, client_at
from sqlalchemy import func, select
from stripe_fixtures import WEBHOOK_SECRET, make_event, make_session, sign

from conftest import (
    ADMIN_PASSWORD,
    ROOT,
    STORE,
    cmdline,
    csrf_from,
    descendants,
    free_port,
    make_product,
)
from swagstore import security
from swagstore.models import Hold, Sale, Stock, db

# `make test` attacks for this long; bench/attack.py runs the full 60 s (see README).
ATTACK_SECONDS = float(os.environ.get("SWAGSTORE_TEST_ATTACK_SECONDS", "15"))


@pytest.fixture
def public_env(server_env) -> dict[str, str]:
    return {
        **server_env,
        "SWAGSTORE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SWAGSTORE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "GUNICORN_CMD_ARGS": "--access-logfile /dev/null",
    }


@pytest.fixture
def public(app, public_env, tmp_path):
    """Start the public set-up (on `app`'s database) with extra settings; stop each after."""
    servers: list[PublicServer] = []

    def start(**settings: str) -> PublicServer:
        env = {**public_env, **settings}
        server = PublicServer(env, tmp_path / f"nginx-{len(servers)}")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def webhook(url: str, body: bytes | None = None, timeout: float = 60) -> requests.Response:
    """Post one signed checkout.session.completed (or `body`) to the store's webhook."""
    body = body or json.dumps(make_event(make_session())).encode()
    return requests.post(
        url + "/stripe/webhook",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
        timeout=timeout,
    )


class Kiosk:
    """The laptop's screen: one /stream from 127.0.0.1, every count it receives."""

    def __init__(self, url: str, sku: str = "tee-m") -> None:
        self.response = requests.get(url + "/stream", stream=True, timeout=60)
        self.sku = sku
        self.counts: list[int] = []
        self.comments: list[str] = []
        self._lines = self.response.iter_lines(decode_unicode=True)

    def next_count(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if data["sku"] == self.sku:
                    self.counts.append(data["available"])
                    return data["available"]
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no count within {timeout} s; comments {self.comments[-3:]}")

    def next_comment(self) -> str:
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line)
                return line
        raise AssertionError("the stream ended")

    def close(self) -> None:
        self.response.close()


# make public itself ------------------------------------------------------------------------


def listening(port: int) -> set[str]:
    """Return the local addresses with a TCP socket listening on `port` (from /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in list(f)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def test_make_public_serves_on_every_interface_keeps_gunicorn_on_loopback_and_stops(
    app, server_env, tmp_path
):
    make_product(app, "tee-m", stock=3)
    port, upstream = free_port(), free_port()
    env = {
        **os.environ,
        **server_env,
        "SWAGSTORE_BIND": f"127.0.0.1:{upstream}",
        "SWAGSTORE_PURCHASE_MODE": "reserved_checkout",
        "NGINX_DIR": str(tmp_path / "nginx"),
        "GUNICORN_CMD_ARGS": "--access-logfile /dev/null",
    }
    make = subprocess.Popen(
        ["make", "--no-print-directory", "public", f"PORT={port}", "SANDBOX=1"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert make.poll() is None, make.stdout.read()
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # still starting (a loaded machine may accept and answer late)
            assert time.monotonic() < deadline, "make public did not answer in 90 s"
            time.sleep(0.2)
        lan = subprocess.run(
            [sys.executable, "deploy/nginx.py", "--lan-address"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        stock = requests.get(f"http://127.0.0.1:{port}/api/stock", timeout=30).json()
        assert stock["items"][0]["buy_url"] == f"http://{lan}:{port}/buy/tee-m"
        assert listening(port) == {"00000000"}  # nginx: 0.0.0.0, every interface
        assert listening(upstream) == {"0100007F"}  # gunicorn: 127.0.0.1 only
        pids = descendants(make.pid)
        running = [cmdline(pid) for pid in pids]
        for needle in ("nginx: master", "gunicorn", "swagstore worker"):
            assert any(needle in cmd for cmd in running), (needle, running)
    finally:
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
        output, _ = make.communicate(timeout=90)
    assert listening(port) == set() and listening(upstream) == set()
    deadline = time.monotonic() + 30
    while alive := [pid for pid in pids if os.path.exists(f"/proc/{pid}")]:
        assert time.monotonic() < deadline, [cmdline(pid) for pid in alive]
        time.sleep(0.1)
    assert f"Phones and Stripe: http://{lan}:{port}/" in output


# Slow clients ---------------------------------------------------------------------------


def attack(url: str, *args: str, attack_port: int | None = None) -> dict:
    """Run bench/attack.py against a running set-up; return its figures."""
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "attack.py"),
        "--url",
        url,
        "--secret",
        WEBHOOK_SECRET,
        "--store",
        STORE,
        "--json",
        *args,
    ]
    if attack_port is not None:
        cmd += ["--attack-port", str(attack_port)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_slow_clients_stall_neither_webhooks_nor_the_kiosk(app, public):
    make_product(app, "tee-m", stock=10_000)
    server = public()
    figures = attack(server.url, "--seconds", str(ATTACK_SECONDS))
    print(json.dumps(figures))

    assert figures["attack"]["open_at_peak"] >= 290  # 150 slow bodies + 150 slow headers
    assert figures["attack"]["dropped_by_server"] > 0  # slow headers hit the header timeout
    hooks = figures["webhooks"]
    assert hooks["sent"] >= ATTACK_SECONDS / 2
    assert hooks["statuses"] == {"200": hooks["sent"]}
    assert hooks["max_s"] < 2
    assert all(page["not_200"] == 0 for page in figures["pages"].values()), figures["pages"]
    kiosk = figures["kiosk"]
    assert kiosk["counts_seen"] == kiosk["counts_expected"] == hooks["sent"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Sale)) == hooks["sent"]


def test_the_same_slow_clients_do_stall_gunicorn_with_no_proxy_in_front(app, public):
    """The attack above is real: aimed at gunicorn itself, webhooks go unanswered."""
    make_product(app, "tee-m", stock=10_000)
    server = public()
    figures = attack(
        server.url,
        *("--seconds", "3", "--slow-header", "0", "--timeout", "5"),
        attack_port=int(server.port),
    )
    assert figures["attack"]["open_at_peak"] >= 140
    assert figures["webhooks"]["max_s"] > 2 or "200" not in figures["webhooks"]["statuses"]


# Streams ------------------------------------------------------------------------------------


class Strangers:
    """`count` streams held open from other addresses, each reopened a second after a refusal."""

    def __init__(self, port: int, addresses: list[str], count: int) -> None:
        self.port = port
        self.addresses = addresses
        self.count = count
        self.streaming = 0
        self.refused: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Strangers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    async def _run(self) -> None:
        await asyncio.gather(*(self._one(n) for n in range(self.count)))

    async def _one(self, n: int) -> None:
        source = self.addresses[n % len(self.addresses)]
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(source, 0)
                )
            except OSError:
                await asyncio.sleep(1)
                continue
            writer.write(b"GET /stream HTTP/1.1\r\nHost: booth\r\n\r\n")
            seen = b""
            admitted = False
            try:
                while not self._stop.is_set():
                    try:
                        chunk = await asyncio.wait_for(reader.read(4096), 0.5)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    seen += chunk
                    if not admitted and b"event: stock" in seen:
                        admitted = True
                        self.streaming += 1
                    busy = re.search(rb": busy[^\n]*", seen)
                    if busy and not admitted:
                        reason = busy.group().decode()
                        self.refused[reason] = self.refused.get(reason, 0) + 1
                        break
            except OSError:
                pass
            finally:
                if admitted:
                    self.streaming -= 1
                writer.close()
            await asyncio.sleep(1)


def test_200_stranger_streams_leave_the_kiosk_its_stream_and_every_count(app, public):
    make_product(app, "tee-m", stock=100)
    server = public()
    # 200 strangers from 100 addresses: more than the booth has room for (2 x 16).
    addresses = [f"127.0.2.{n}" for n in range(1, 101)]
    strangers = Strangers(server.proxy_port, addresses, 200).start()
    try:
        deadline = time.monotonic() + 60
        while strangers.streaming < 32 or ": busy" not in strangers.refused:
            assert time.monotonic() < deadline, (strangers.streaming, strangers.refused)
            time.sleep(0.2)
        assert strangers.streaming == 32  # every stranger place is taken

        kiosk = Kiosk(server.url)
        assert kiosk.next_count() == 100  # its snapshot: admitted all the same
        for n in range(1, 11):
            assert webhook(server.url).status_code == 200
            assert kiosk.next_count() == 100 - n
        assert kiosk.counts == list(range(100, 89, -1))  # every count, in order
        kiosk.close()
    finally:
        strangers.stop()


def test_one_address_gets_its_share_of_streams(app, public):
    make_product(app, "tee-m", stock=5)
    server = public(SWAGSTORE_STREAM_MAX_PER_CLIENT="2")
    strangers = Strangers(server.proxy_port, ["127.0.2.201"], 10).start()
    try:
        deadline = time.monotonic() + 60
        while strangers.refused.get(": busy: too many streams from your address", 0) < 6:
            assert time.monotonic() < deadline, (strangers.streaming, strangers.refused)
            time.sleep(0.2)
        # Two per gunicorn worker at most (each worker counts its own).
        assert strangers.streaming <= 4
        assert ": busy" not in strangers.refused  # the process was never full
    finally:
        strangers.stop()


# Staff login --------------------------------------------------------------------------------


def log_in(http: requests.Session, url: str, password: str = ADMIN_PASSWORD) -> requests.Response:
    token = csrf_from(http.get(url + "/admin/login", timeout=30).text)
    return http.post(
        url + "/admin/login",
        data={"csrf_token": token, "password": password},
        allow_redirects=False,
        timeout=30,
    )


def test_guesses_lock_out_their_client_only_and_a_logged_out_cookie_is_dead(public):
    server = public()
    guesser, staff = client_at("127.0.3.1"), client_at("127.0.3.2")
    for _ in range(5):
        assert log_in(guesser, server.url, "guess").status_code == 401
    locked = log_in(guesser, server.url)
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert "Too many wrong passwords from this device" in locked.text
    # Writing someone else's address into X-Forwarded-For changes nothing: nginx replaces it.
    guesser.headers["X-Forwarded-For"] = "127.0.3.2"
    assert log_in(guesser, server.url).status_code == 429

    # Staff at another address log in at once.
    assert log_in(staff, server.url).status_code == 303
    page = staff.get(server.url + "/admin", timeout=30)
    assert page.status_code == 200 and "Stock" in page.text
    assert page.headers["Server"] == "nginx"  # no version, and not gunicorn's
    behind = requests.get(server.direct + "/healthz", timeout=30).headers["Server"]
    assert behind == "gunicorn"  # gunicorn's own has no version either
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"

    kept = staff.cookies.get("session")
    staff.post(server.url + "/admin/logout", data={"csrf_token": csrf_from(page.text)}, timeout=30)
    replay = client_at("127.0.3.2")
    replay.cookies.set("session", kept)
    answer = replay.get(server.url + "/admin", allow_redirects=False, timeout=30)
    assert (answer.status_code, answer.headers["Location"]) == (302, "/admin/login")


def test_a_cookie_from_before_a_password_change_is_refused(public):
    first = public()
    staff = client_at("127.0.3.3")
    assert log_in(staff, first.url).status_code == 303
    assert staff.get(first.url + "/admin", timeout=30).status_code == 200
    kept = staff.cookies.get("session")
    first.stop()

    second = public(SWAGSTORE_ADMIN_PASSWORD="a new password for day two")
    replay = client_at("127.0.3.3")
    replay.cookies.set("session", kept)
    answer = replay.get(second.url + "/admin", allow_redirects=False, timeout=30)
    assert (answer.status_code, answer.headers["Location"]) == (302, "/admin/login")
    assert log_in(client_at("127.0.3.3"), second.url, "a new password for day two").ok


def test_over_https_the_staff_cookie_is_secure(public, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=booth", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = public(TLS_CERT=str(cert), TLS_KEY=str(key))
    staff = requests.Session()
    # Per request: a Session's own `verify` loses to REQUESTS_CA_BUNDLE when that is set.
    trust = str(cert)  # the certificate is its own CA
    token = csrf_from(staff.get(server.url + "/admin/login", timeout=30, verify=trust).text)
    answer = staff.post(
        server.url + "/admin/login",
        data={"csrf_token": token, "password": ADMIN_PASSWORD},
        headers={"Referer": server.url + "/admin/login"},
        allow_redirects=False,
        timeout=30,
        verify=trust,
    )
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie


# Holds -------------------------------------------------------------------------------------


def test_forty_cookieless_buys_from_one_client_hold_only_its_share(app, public):
    make_product(app, "tee-m", stock=30)
    server = public(SWAGSTORE_PURCHASE_MODE="reserved_checkout")
    start = threading.Barrier(40)

    def buy(_: int) -> requests.Response:
        http = client_at("127.0.4.1")  # no cookie kept between them: 40 new visitors
        http.headers["Accept"] = "text/html,*/*;q=0.8"  # a phone's browser
        start.wait(timeout=60)
        return http.get(server.url + "/buy/tee-m", allow_redirects=False, timeout=120)

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(buy, range(40)))
    share = 4  # HOLDS_PER_CLIENT's default
    assert sorted(a.status_code for a in answers) == [303] * share + [429] * (40 - share)
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert "Please wait a moment" in refused.text and "Nothing was charged" in refused.text
    with app.app_context():
        assert db.session.get(Stock, ("tee-m", STORE)).reserved == share
        tag = security.client_tag("127.0.4.1")
        assert db.session.scalar(select(func.count()).where(Hold.client == tag)) == share
        db.session.rollback()
    # Another visitor, at another address, still gets a unit.
    assert (
        client_at("127.0.4.2")
        .get(server.url + "/buy/tee-m", allow_redirects=False, timeout=120)
        .status_code
        == 303
    )


# A locked database ---------------------------------------------------------------------------

LOCK_SECONDS = 40  # as long as a stuck admin script might; over the 10 s busy timeout: 503


def test_while_another_process_holds_the_write_lock_reads_go_on_and_webhooks_wait(
    app, public, db_path
):
    make_product(app, "tee-m", stock=10)
    server = public(SWAGSTORE_STREAM_PING_SECONDS="1")
    kiosk = Kiosk(server.url)
    assert kiosk.next_count() == 10
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2])); db.rollback()\n",
            str(db_path),
            str(LOCK_SECONDS),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    bodies = [json.dumps(make_event(make_session())).encode() for _ in range(2)]
    try:
        assert holder.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            refused = [pool.submit(webhook, server.url, body) for body in bodies]
            # Reads all along: the kiosk page, the stock API, a fresh stream.
            while time.monotonic() - locked_at < LOCK_SECONDS - 5:
                for path in ("/", "/api/stock"):
                    began = time.monotonic()
                    assert requests.get(server.url + path, timeout=30).status_code == 200
                    assert time.monotonic() - began < 2, path
                time.sleep(0.5)
            fresh = Kiosk(server.url)
            assert fresh.next_count(timeout=2) == 10
            fresh.close()
            assert [f.result().status_code for f in refused] == [503, 503]
        kiosk.comments.clear()
        kiosk.next_comment()  # the old stream kept going too: its pings still come
        assert kiosk.comments == [": ping"]
    finally:
        holder.communicate(timeout=LOCK_SECONDS + 30)
    # Stripe retries: now they are applied, once each, and the kiosk sees both sales.
    assert [webhook(server.url, body).json()["outcome"] for body in bodies] == ["applied"] * 2
    assert kiosk.next_count() == 9 and kiosk.next_count() == 8
    kiosk.close()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Sale)) == 2
