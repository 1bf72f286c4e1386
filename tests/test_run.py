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
    assert "make run: refusing to open a booth that takes no money." in done.stderr
    assert "'make run SANDBOX=1' runs the offline sandbox anyway." in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
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
