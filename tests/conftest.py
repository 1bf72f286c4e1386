"""Fixtures: an app on a real SQLite file, its client and CLI runner, and a live server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from swagstore import create_app
from swagstore.catalog import Item, load
from swagstore.cli import init_db
from swagstore.models import db

ROOT = Path(__file__).resolve().parent.parent
STORE = "booth"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "swagstore.sqlite"


@pytest.fixture
def app_config(db_path: Path) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
        "STORE_ID": STORE,
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app under gunicorn in its own process group, as the booth runs it."""

    def __init__(self, env: dict[str, str], workers: int = 1, threads: int = 16) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--access-logfile",
            "/dev/null",
            "wsgi:app",
        ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            # A worker still booting on a busy machine may accept and answer late.
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError("server did not become healthy in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def kill(self) -> None:
        """Stop the server as a power cut would: SIGKILL to every process."""
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
