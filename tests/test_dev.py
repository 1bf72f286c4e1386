"""`make dev` from a fresh copy of the repository: the README's first command, for real.

It starts web and worker (honcho, Procfile.dev); Ctrl-C stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import requests

from conftest import ROOT, cmdline, csrf_from, descendants, free_port
from swagstore.lan import lan_address
from swagstore.lan import public_url as lan_public_url


def fresh_clone(dest) -> None:
    """Copy what a clone would hold: tracked files and new files git does not ignore."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_make_dev_from_a_fresh_clone_serves_the_demo_store(tmp_path):
    clone = tmp_path / "swagstore"
    clone.mkdir()
    fresh_clone(clone)
    assert not (clone / ".venv").exists()
    assert not (clone / "instance" / "swagstore.sqlite").exists()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen(
        ["make", "dev", f"PORT={port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 400
        body = None
        while time.monotonic() < deadline and body is None:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "make dev exited:\n" + "".join(output)
            output.append(line)
            if "Admin:" in line:
                assert f"http://127.0.0.1:{port}/admin  password: " in line
                password = line.split("password: ")[1].strip()
            if "Kiosk:" in line:
                assert f"http://127.0.0.1:{port}/" in line
                while time.monotonic() < deadline:
                    try:
                        body = requests.get(f"http://127.0.0.1:{port}/api/stock", timeout=2).json()
                        break
                    except requests.ConnectionError:
                        time.sleep(0.2)
        assert body is not None, "".join(output)
        assert len(body["items"]) == 10
        assert body["sandbox"] is True
        assert {"tee-s", "tee-m", "tee-l", "tee-xl", "hoodie", "stickers"} <= {
            i["sku"] for i in body["items"]
        }
        assert (clone / "instance" / "swagstore.sqlite").exists()
        # sync-stripe gave every item a sandbox payment link that opens a checkout here.
        assert all(i["payment_link_id"] for i in body["items"])
        tee = next(i for i in body["items"] if i["sku"] == "tee-m")
        assert tee["buy_url"].startswith(f"http://127.0.0.1:{port}/sandbox/pay/plink_")
        checkout = requests.get(tee["buy_url"], timeout=30)
        assert checkout.status_code == 200, checkout.text
        assert "/sandbox/checkout/cs_test_" in checkout.url
        assert "SANDBOX: no real payments" in checkout.text
        # The printed password opens the back office.
        with requests.Session() as http:
            login = f"http://127.0.0.1:{port}/admin/login"
            token = csrf_from(http.get(login, timeout=10).text)
            stock = http.post(login, data={"csrf_token": token, "password": password}, timeout=10)
            assert stock.url == f"http://127.0.0.1:{port}/admin", stock.text
            assert "tee-xl" in stock.text and "SANDBOX: no real payments" in stock.text
        assert (clone / "instance" / "admin_password").read_text().strip() == password
        # The demo needs the runtime only: no test or lint tools were installed for it.
        venv = clone / ".venv" / "bin"
        assert (venv / "gunicorn").exists() and (venv / "flask").exists()
        for tool in ("pytest", "playwright", "mypy", "ruff"):
            assert not (venv / tool).exists(), f"make dev installed {tool}"
        # The worker runs beside the web server (Procfile.dev), and is seen on /healthz.
        health = wait_for_worker(port)
        assert health["status"] == "ok" and health["worker"]["ok"], health
        processes = descendants(proc.pid)
        assert any("swagstore worker" in cmdline(pid) for pid in processes)
        # Ctrl-C in the terminal: SIGINT to the foreground group stops web and worker.
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        assert not [pid for pid in processes if cmdline(pid)], "a process outlived Ctrl-C"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        proc.stdout.close()

    # The next `make dev` on another port re-points the sandbox's links: the QR codes lead
    # to the new port, not to the old one where nothing listens any more.
    moved = free_port()
    proc = subprocess.Popen(
        ["make", "dev", f"PORT={moved}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "make dev exited:\n" + "".join(output)
            output.append(line)
            if "Kiosk:" in line:
                assert f"http://127.0.0.1:{moved}/" in line
                break
        assert "10 links created" in "".join(output) and "10 retired" in "".join(output)
        body = wait_for_stock(moved)
        for item in body["items"]:
            assert item["buy_url"].startswith(f"http://127.0.0.1:{moved}/sandbox/pay/plink_")
        tee = next(i for i in body["items"] if i["sku"] == "tee-m")
        checkout = requests.get(tee["buy_url"], timeout=30)
        assert checkout.status_code == 200, checkout.text
        assert checkout.url.startswith(f"http://127.0.0.1:{moved}/sandbox/checkout/cs_test_")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        proc.stdout.close()


def wait_for_stock(port: int) -> dict:
    """Return /api/stock once the server answers."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return requests.get(f"http://127.0.0.1:{port}/api/stock", timeout=5).json()
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "make dev never answered"
            time.sleep(0.2)


def test_make_dev_on_every_interface_puts_the_lan_address_in_public_url():
    """`make dev HOST=0.0.0.0`: the QR codes carry the laptop's LAN address, for phones.

    Dry run (-n): the test listens on no interface but loopback. The recipe's commands
    show the address the sync and the server get.
    """
    lan = lan_address()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
    done = subprocess.run(
        ["make", "-n", "dev", "HOST=0.0.0.0", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    plan = done.stdout
    if lan is None:
        # A machine on no network: loopback it is, and make says phones cannot reach it.
        assert "phones cannot reach this laptop" in done.stderr
    else:
        assert "phones cannot reach" not in done.stderr
    url = f"http://{lan or '127.0.0.1'}:{port}"
    assert f"SWAGSTORE_PUBLIC_URL={url} .venv/bin/flask --app swagstore sync-stripe" in plan
    assert f"SWAGSTORE_PUBLIC_URL={url} HOST=0.0.0.0" in plan
    assert f"Kiosk:       {url}/" in plan
    # Any other host is its own address; an exported PUBLIC_URL wins.
    assert lan_public_url("127.0.0.1", port) == f"http://127.0.0.1:{port}"
    assert lan_public_url("0.0.0.0", port) == url == lan_public_url("::", port)
    mine = subprocess.run(
        ["make", "-n", "dev", "HOST=0.0.0.0"],
        cwd=ROOT,
        env={**env, "SWAGSTORE_PUBLIC_URL": "http://booth.example:8080"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "SWAGSTORE_PUBLIC_URL=http://booth.example:8080 .venv/bin/flask" in mine


def wait_for_worker(port: int) -> dict:
    """Return /healthz once it has seen the worker (it starts beside the web server)."""
    deadline = time.monotonic() + 120
    while True:
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        if health["worker"]["ok"] or time.monotonic() > deadline:
            return health
        time.sleep(0.5)


def test_make_dev_with_a_stripe_key_set_refuses_and_touches_nothing(tmp_path):
    # A rehearsal on the booth laptop the morning after the key went in: its sync would
    # point the account's real payment links at this laptop's loopback address.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
    env.update(
        SWAGSTORE_STRIPE_SECRET_KEY="rk_live_booth",
        SWAGSTORE_STRIPE_API_BASE="http://127.0.0.1:9",
        SWAGSTORE_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'booth.sqlite'}",
        SWAGSTORE_SECRET_KEY="dev-test",
    )
    done = subprocess.run(
        ["make", "dev", f"PORT={free_port()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert "make dev: a Stripe key is set" in done.stderr
    assert "Open the booth with 'make run'" in done.stderr
    assert "sync-stripe" not in done.stdout
    assert not (tmp_path / "booth.sqlite").exists(), "init-db ran"
