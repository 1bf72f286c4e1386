"""Fixtures: an app on a real database, its client and CLI runner, and a live server.

The database is a SQLite file unless a test asks for more. A test that must hold on both
SQLite and PostgreSQL says so with the `both_databases` mark, which parametrizes the
`database_url` fixture (test ids end in `[sqlite]` and `[postgres]`):

    from conftest import both_databases

    @both_databases
    def test_something(app, database_url): ...

`app`, `app_config`, `server_env` and `live_server` then all use that database. The
PostgreSQL case gets a fresh, empty database per test on one server for the whole session:
the server at SWAGSTORE_TEST_POSTGRES_URL if set (its user needs CREATEDB), else a
throwaway cluster started from the installed binaries (/usr/lib/postgresql/*/bin). With
neither, the PostgreSQL cases are skipped with the reason; `.ci/run` installs PostgreSQL, so
in CI they always run. A test that needs PostgreSQL only uses `postgres_database_url`.
An app a test makes itself with create_app must have its engine disposed at the end
(`with other.app_context(): db.engine.dispose()`): psycopg warns about a connection left
open, and warnings are errors here.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from swagstore import create_app
from swagstore.catalog import Item, load
from swagstore.cli import init_db
from swagstore.models import db

ROOT = Path(__file__).resolve().parent.parent
STORE = "booth"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "swagstore.sqlite"


POSTGRES_URL_ENV = "SWAGSTORE_TEST_POSTGRES_URL"
POSTGRES_BIN = next(
    (
        d
        for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        if os.path.exists(os.path.join(d, "initdb"))
    ),
    None,
)
needs_postgres = pytest.mark.skipif(
    not (os.environ.get(POSTGRES_URL_ENV) or POSTGRES_BIN),
    reason=f"no PostgreSQL: install Debian's postgresql (.ci/run does) or set {POSTGRES_URL_ENV}",
)
both_databases = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=needs_postgres)], indirect=True
)


INITDB_OPTIONS = ("--username=postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")


class PostgresCluster:
    """A throwaway PostgreSQL server in a temporary directory, on a free local port."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="swagstore-pg-")
        self.data = os.path.join(self.dir, "data")
        # PostgreSQL refuses to run as root, so root hands the cluster to `postgres`.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)

    def _run(self, *args: str) -> None:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresCluster:
        self._run("initdb", "--pgdata", self.data, *INITDB_OPTIONS)
        # fsync off: a test cluster is thrown away, so durability would only cost time.
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off -c max_connections=400"
        )
        log = os.path.join(self.dir, "server.log")
        self._run("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _admin(server_url: str) -> psycopg.Connection:
    """Connect to a server in autocommit: CREATE/DROP DATABASE cannot run in a transaction."""
    conninfo = make_url(server_url).set(drivername="postgresql")
    return psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Return the SQLAlchemy URL of a PostgreSQL server shared by the whole session."""
    if os.environ.get(POSTGRES_URL_ENV):
        yield os.environ[POSTGRES_URL_ENV]
        return
    if POSTGRES_BIN is None:
        raise RuntimeError(f"no PostgreSQL binaries and no {POSTGRES_URL_ENV}")
    cluster = PostgresCluster(POSTGRES_BIN).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_database_url(postgres_server: str) -> Iterator[str]:
    """Return the URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = "swagstore_test_" + uuid.uuid4().hex[:12]
    with _admin(postgres_server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with _admin(postgres_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """Return this test's database URL: SQLite unless parametrized with "postgres"."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_database_url")
    return f"sqlite:///{db_path}"


@pytest.fixture
def app_config(database_url: str, tmp_path: Path) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        # The sandbox's own file, beside this test's database (also when that is PostgreSQL).
        "SANDBOX_DATABASE": str(tmp_path / "sandbox.sqlite"),
        "STORE_ID": STORE,
        # Any Stripe call made inside a database transaction raises, in servers too.
        "STRIPE_CALL_GUARD": True,
    }


@pytest.fixture
def app(app_config: dict):
    app = create_app(app_config)
    with app.app_context():
        init_db()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def make_item(sku: str = "tee-m", *, stock: int = 10, price: int = 2500, **fields) -> Item:
    """Build a valid catalog item; keyword arguments override its fields."""
    fields.setdefault("name", f"Item {sku}")
    fields.setdefault("currency", "usd")
    return Item(sku=sku, price=price, stock=stock, **fields)


def make_product(app, sku: str = "tee-m", *, stock: int = 10, store: str = STORE, **fields):
    """Add one product with its stock row to the database and commit."""
    with app.app_context():
        load([make_item(sku, stock=stock, **fields)], store)
        db.session.commit()


def race(
    database_url: str,
    ops: list[str],
    attempts: int,
    sku: str = "tee-m",
    stores: list[str] | None = None,
) -> list[dict]:
    """Race one race_worker process per op (at its store), all released at once when ready."""
    stores = stores or [STORE] * len(ops)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "race_worker.py"),
                database_url,
                op,
                sku,
                str(attempts),
                store,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for op, store in zip(ops, stores, strict=True)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            results.append(json.loads(out))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def free_port() -> int:
    """Return a port free on every interface, below the kernel's range for outgoing ports.

    Port 0 would give one from that range (32768-60999 on Linux), where any outgoing
    connection of a parallel test may take it before the server binds it. A random pick
    below, checked by binding it, collides with another test process only by chance.
    """
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port


def descendants(pid: int) -> list[int]:
    """Return every process below `pid` (children of any of its threads), read from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    children = [int(child) for child in f.read().split()]
            except FileNotFoundError:
                continue
            found += children
            todo += children
    return found


def wait_in_page(page, expression: str, arg=None, timeout: float = 30.0) -> None:
    """Wait until a JavaScript expression is truthy in a page, polled from the test.

    Not Playwright's wait_for_function: its polling evaluates the expression with eval,
    which the store's Content-Security-Policy refuses; page.evaluate is not bound by it.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"never true in the page: {expression}"
        time.sleep(0.05)


def cmdline(pid: int) -> str:
    """Return a process's command line with spaces, or "" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except FileNotFoundError:
        return ""


class LiveServer:
    """The booth as `make run` starts it: honcho runs the Procfile's web and worker lines.

    web is gunicorn (`workers` x `threads`), worker is `flask --app swagstore worker` in its
    restart loop. start() returns once /healthz answers and reports a worker that beat
    after the start.
    """

    # Procfile.public adds the proxy (tests/public_server.py).
    procfile = "Procfile"

    def __init__(self, env: dict[str, str], workers: int = 1, threads: int = 16) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        env = {
            **self.env,
            # The venv's gunicorn and flask, as `make run` puts them first on PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}",
            "SWAGSTORE_BIND": f"127.0.0.1:{self.port}",
            "SWAGSTORE_WORKERS": str(self.workers),
            "SWAGSTORE_THREADS": str(self.threads),
            "GUNICORN_CMD_ARGS": "--access-logfile /dev/null",
        }
        cmd = [sys.executable, "-m", "honcho", "--no-colour", "start", "-f", self.procfile]
        started = time.time()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            health = self.health()
            seen = health and health["worker"]["seen_seconds_ago"]
            if seen is not None and seen < time.time() - started:
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server and worker did not become healthy in 60 s: {health}")

    def health(self) -> dict | None:
        """Return /healthz's answer, or None while the server does not answer 200."""
        try:
            response = requests.get(self.url + "/healthz", timeout=5)
        # A worker still booting on a busy machine may accept and answer late.
        except (requests.ConnectionError, requests.Timeout):
            return None
        return response.json() if response.status_code == 200 else None

    def processes(self) -> list[int]:
        """Return the pids of honcho's children: the Procfile lines and what they started."""
        return descendants(self.proc.pid) if self.proc is not None else []

    def worker_pid(self) -> int:
        """Return the pid of the running `flask --app swagstore worker`."""
        found = [(p, cmdline(p)) for p in self.processes()]
        # Not the shell of the Procfile's restart loop, which names the command too.
        (pid,) = [p for p, cmd in found if "swagstore worker" in cmd and "while" not in cmd]
        return pid

    def _groups(self) -> set[int]:
        # honcho starts each Procfile line in a session of its own.
        groups = {self.proc.pid}
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        return groups

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop honcho, which stops web and worker (SIGTERM), or everything at once."""
        if self.proc is None:
            return
        groups, seen = self._groups(), self.processes()
        if sig == signal.SIGTERM:
            # honcho passes it on to each line's process group and waits for them.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        else:
            for group in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
        self.proc.wait(timeout=60)
        for group in groups:  # anything a stuck honcho left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        # Signals land at once but a loaded machine takes a moment to tear a process down:
        # wait, so "nothing survived" is checked against processes that had time to die.
        deadline = time.monotonic() + 15
        while any(cmdline(pid) for pid in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc = None

    def kill(self) -> None:
        """Stop web and worker as a power cut would: SIGKILL to every process."""
        self.stop(signal.SIGKILL)


@pytest.fixture
def server_env(app_config: dict) -> dict[str, str]:
    """Environment that points a server process at this test's database."""
    return {
        "SWAGSTORE_" + key: str(value) for key, value in app_config.items() if key != "TESTING"
    }


@pytest.fixture
def live_server(app, server_env) -> Iterator[LiveServer]:
    server = LiveServer(server_env).start()
    yield server
    server.stop()


ADMIN_PASSWORD = "correct horse battery staple"


def csrf_from(html: str) -> str:
    """Return the CSRF token of the first form in an HTML page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client, password: str = ADMIN_PASSWORD, name: str = "") -> str:
    """Log a Flask test client into /admin; return a CSRF token for its next forms."""
    token = csrf_from(client.get("/admin/login").text)
    response = client.post(
        "/admin/login", data={"csrf_token": token, "password": password, "name": name}
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/admin").text)


def log_in_http(base_url: str, password: str = ADMIN_PASSWORD) -> tuple[requests.Session, str]:
    """Log a new requests.Session into a running server's /admin; return it and a token."""
    http = requests.Session()
    token = csrf_from(http.get(base_url + "/admin/login", timeout=30).text)
    response = http.post(
        base_url + "/admin/login",
        data={"csrf_token": token, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303, response.text
    return http, csrf_from(http.get(base_url + "/admin", timeout=30).text)


class Sandbox:
    """A live server in sandbox mode, and what a test needs to play the visitor's phone.

    `url` is the server, `api_base` its Stripe API base (`<url>/sandbox`), also set as the
    in-process `app`'s STRIPE_API_BASE so `payments.gateway()` reaches it with the real SDK.
    Helpers answer the sandbox's JSON:
    - `open_session(link_id)` -> {"id", "url"}: a phone opening a payment link.
    - `pay(session, method="card")` -> the Checkout Session, paid (`session` is an id or its
      url; method "delayed" completes it unpaid, then `settle(session, "succeeded")`).
    - `confirm(intent_id, client_secret)` -> the PaymentIntent, authorized by the card form.
    - `fault(path_prefix, count, mode="error"|"timeout", seconds=...)`: next calls fail.
    - `ledger()` -> {"entries", "payment_intents": {pi: {action: {"count", "amount"}}}}.
    - `events(*types)` -> events newest first; `deliveries()` -> webhook delivery attempts.
    - `advance_clock(seconds)`: move the sandbox's time on (due sessions expire).
    - `api(method, path, **kw)`: a raw authenticated request to `<api_base>/v1/<path>`.
    - `one_unit_link(amount, currency="usd", **product)` -> (product, price, link) made
      through the API: a link selling one unit.
    """

    KEY = "sk_test_swagstore_sandbox"

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        self.api_base = server.url + "/sandbox"

    def _post(self, path: str, **kwargs) -> dict:
        response = requests.post(
            self.url + path, headers={"Accept": "application/json"}, timeout=60, **kwargs
        )
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json()

    def open_session(self, link_id: str) -> dict:
        return self._post(f"/sandbox/payment_links/{link_id}/sessions")

    def pay(self, session: str, method: str = "card") -> dict:
        session_id = session.rstrip("/").rsplit("/", 1)[-1]
        return self._post(f"/sandbox/checkout/{session_id}/pay", data={"method": method})

    def settle(self, session: str, outcome: str = "succeeded") -> dict:
        session_id = session.rstrip("/").rsplit("/", 1)[-1]
        return self._post(f"/sandbox/checkout/{session_id}/settle", data={"outcome": outcome})

    def confirm(self, intent_id: str, client_secret: str) -> dict:
        return self._post(
            f"/sandbox/payment_intents/{intent_id}/confirm", data={"client_secret": client_secret}
        )

    def fault(self, path_prefix: str, count: int = 1, mode: str = "error", seconds: float = 0):
        body = {"path_prefix": path_prefix, "count": count, "mode": mode, "seconds": seconds}
        return self._post("/sandbox/_control/faults", json=body)

    def ledger(self) -> dict:
        return requests.get(self.url + "/sandbox/_control/ledger", timeout=60).json()

    def deliveries(self) -> list[dict]:
        return requests.get(self.url + "/sandbox/_control/deliveries", timeout=60).json()[
            "deliveries"
        ]

    def advance_clock(self, seconds: float) -> dict:
        return self._post("/sandbox/_control/clock", json={"advance": seconds})

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.KEY}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.api_base}/v1/{path}", headers=headers, timeout=60, **kwargs
        )

    def one_unit_link(
        self, amount: int, currency: str = "usd", **product: str
    ) -> tuple[dict, dict, dict]:
        made = self.api("POST", "products", data=product).json()
        price_data = {"product": made["id"], "unit_amount": amount, "currency": currency}
        price = self.api("POST", "prices", data=price_data).json()
        link = self.api(
            "POST",
            "payment_links",
            data={"line_items[0][price]": price["id"], "line_items[0][quantity]": 1},
        ).json()
        return made, price, link

    def events(self, *types: str) -> list[dict]:
        params = {"limit": 100, **{f"types[{n}]": t for n, t in enumerate(types)}}
        return self.api("GET", "events", params=params).json()["data"]


@pytest.fixture
def sandbox_env() -> dict[str, str]:
    """Extra SWAGSTORE_* settings for the sandbox server; override it in a test module.

    An override applies to every test of that module: e.g. SANDBOX_WEBHOOK_URL sends the
    events to a test receiver instead of the app's own /stripe/webhook.
    """
    return {}


@pytest.fixture
def sandbox_workers() -> int:
    """Gunicorn workers of the sandbox server; parametrize it for a test that needs more."""
    return 1


def start_sandbox(app, server: LiveServer) -> Sandbox:
    """Start a sandbox-mode server whose gateway, and `app`'s, reach its sandbox over HTTP."""
    from swagstore import payments

    server.env["SWAGSTORE_STRIPE_API_BASE"] = server.url + "/sandbox"
    server.start()
    app.config["STRIPE_API_BASE"] = server.url + "/sandbox"
    payments.close(app)
    return Sandbox(server)


@pytest.fixture
def sandbox(app, server_env, sandbox_env, sandbox_workers) -> Iterator[Sandbox]:
    """A live sandbox-mode server on this test's database; `app` talks to it over HTTP."""
    from swagstore import payments

    server = LiveServer({**server_env, **sandbox_env}, workers=sandbox_workers)
    started = start_sandbox(app, server)
    try:
        yield started
    finally:
        payments.close(app)
        server.stop()


CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling hosts this machine
# cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser), for tests/browser."""
    from playwright.sync_api import expect, sync_playwright

    # Generous: the machine is shared, and a stock change travels DB -> reader -> browser.
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
