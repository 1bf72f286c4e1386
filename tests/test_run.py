"""`make run`, the booth command: no key, no booth (unless SANDBOX=1 asks for the sandbox)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import requests

from conftest import ROOT, free_port
from swagstore import SANDBOX_WARNING


def booth_env(tmp_path, port: int, **settings: str) -> dict[str, str]:
    """The environment of a booth laptop: this test's files, its port, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWAGSTORE_")}
    env.pop("VIRTUAL_ENV", None)
    return {
        **env,
        "SWAGSTORE_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'booth.sqlite'}",
        "SWAGSTORE_SANDBOX_DATABASE": str(tmp_path / "sandbox.sqlite"),
        "SWAGSTORE_SECRET_KEY": "booth-test",
        "SWAGSTORE_BIND": f"127.0.0.1:{port}",
        "SWAGSTORE_WORKERS": "1",
        **{f"SWAGSTORE_{key}": value for key, value in settings.items()},
    }


def test_make_run_without_a_key_refuses_and_starts_nothing(tmp_path):
    done = subprocess.run(
        ["make", "run"],
        cwd=ROOT,
        env=booth_env(tmp_path, free_port()),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert "FAIL  key             no STRIPE_SECRET_KEY" in done.stdout
    assert "make run: no usable Stripe key" in done.stderr
    assert "'make run SANDBOX=1' runs the offline sandbox anyway." in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "booth.sqlite").exists(), "init-db ran: the booth was started"


def test_make_run_with_a_malformed_key_names_the_key_not_a_missing_one(tmp_path):
    done = subprocess.run(
        ["make", "run"],
        cwd=ROOT,
        env=booth_env(tmp_path, free_port(), STRIPE_SECRET_KEY="sk_tset_typo"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert "FAIL  key" in done.stdout and "no Stripe key" in done.stdout
    assert "make run: no usable Stripe key (the key line above says why)" in done.stderr
    assert not (tmp_path / "booth.sqlite").exists(), "init-db ran: the booth was started"


@pytest.mark.parametrize(
    ("args", "settings", "sandbox"),
    [
        (["SANDBOX=1"], {}, True),
        # The key's Stripe is a closed port: starting the booth asks nothing of Stripe.
        (
            [],
            {"STRIPE_SECRET_KEY": "sk_test_booth", "STRIPE_API_BASE": "http://127.0.0.1:9"},
            False,
        ),
    ],
    ids=["sandbox-asked-for", "with-a-key"],
)
def test_make_run_starts_the_booth_with_a_key_or_when_the_sandbox_is_asked_for(
    tmp_path, args, settings, sandbox
):
    port = free_port()
    log = tmp_path / "make-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["make", "run", *args],
            cwd=ROOT,
            env=booth_env(tmp_path, port, **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        health = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and health is None:
            assert proc.poll() is None, log.read_text()
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        assert health is not None, log.read_text()
        assert health["sandbox"] is sandbox
        mounted = requests.get(
            f"http://127.0.0.1:{port}/sandbox/v1/products",
            headers={"Authorization": "Bearer sk_test_x"},
            timeout=10,
        )
        assert mounted.status_code == (200 if sandbox else 404)
        # Without a key every process says loudly that this is the sandbox; with one, none.
        deadline = time.monotonic() + 60
        while sandbox and SANDBOX_WARNING not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        assert (SANDBOX_WARNING in log.read_text()) is sandbox
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def test_a_second_make_run_on_the_same_port_refuses_and_leaves_the_first_alone(tmp_path):
    port = free_port()
    key = {"STRIPE_SECRET_KEY": "sk_test_booth", "STRIPE_API_BASE": "http://127.0.0.1:9"}
    env = booth_env(tmp_path, port, **key)
    # PORT names the port: no SWAGSTORE_BIND needed, and make run says where it listens.
    env.pop("SWAGSTORE_BIND")
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert first.poll() is None, log.read_text()
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert f"Kiosk:  http://127.0.0.1:{port}/" in log.read_text()
        second = subprocess.run(
            ["make", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert second.returncode != 0
        said = second.stdout + second.stderr
        assert f"127.0.0.1:{port} is already in use" in said
        assert "Traceback" not in said
        assert first.poll() is None
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=60)
