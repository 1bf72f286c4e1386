"""The background worker: runs what is queued, once, and shows on /healthz when it is gone.

Live servers here are web and worker started from the Procfile, as the booth runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from sqlalchemy import func, select
from stripe_fixtures import make_event, make_session, sign

from conftest import (
    ADMIN_PASSWORD,
    ROOT,
    STORE,
    LiveServer,
    both_databases,
    cmdline,
    log_in_http,
    make_product,
    start_sandbox,
)
from swagstore import payments, tasks, worker
from swagstore.models import Sale, Task, db

DEADLINE = 60


def queue(app, n: int) -> list[int]:
    """Queue `n` link switches for an item with no link: each runs without calling Stripe."""
    with app.app_context():
        ids = [tasks.enqueue("sync_link", {"sku": "tee-m", "store": STORE}).id for _ in range(n)]
        db.session.commit()
    return ids


def task_rows(app) -> list[tuple[str, int, int]]:
    """Return (status, attempts, count) of every task, grouped."""
    with app.app_context():
        rows = db.session.execute(
            select(Task.status, Task.attempts, func.count()).group_by(Task.status, Task.attempts)
        ).all()
        db.session.rollback()
    return sorted(tuple(r) for r in rows)


def wait_for(check, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while (value := check()) is None or value is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_round_beats_and_runs_due_tasks(app):
    make_product(app, stock=1)
    queue(app, 3)

    assert worker.run(app, rounds=1) == 3

    with app.app_context():
        seen = worker.last_seen(STORE)
    assert seen.ok and seen.pid == os.getpid() and seen.seconds_ago < 5
    assert task_rows(app) == [("done", 1, 3)]


def test_a_worker_never_seen_is_not_ok(app):
    with app.app_context():
        assert worker.last_seen(STORE) == worker.Seen(None, None)
        assert not worker.last_seen(STORE).ok


def test_a_live_stores_worker_never_loads_the_sandbox(app, app_config):
    config = {k: v for k, v in app_config.items() if k != "TESTING"}
    config["STRIPE_SECRET_KEY"] = "sk_test_live_store"
    code = (
        "import sys\n"
        "from swagstore import create_app, worker\n"
        f"app = create_app({config!r})\n"
        "assert worker.run(app, rounds=2) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('swagstore.sandbox')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with app.app_context():
        assert worker.last_seen(STORE).ok  # it did run its rounds


@both_databases
def test_two_workers_started_by_mistake_run_every_task_once(app, server_env):
    make_product(app, stock=1)
    env = {**os.environ, **server_env, "SWAGSTORE_SANDBOX_DELIVER": "false"}
    cmd = [sys.executable, "-m", "flask", "--app", "swagstore", "worker"]
    workers = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for w in workers:  # both up and idle before there is anything to take
            assert w.stdout.readline().startswith("Worker started")
        queue(app, 300)
        wait_for(lambda: task_rows(app) == [("done", 1, 300)], "300 tasks done", 180)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
    outputs = [w.communicate(timeout=DEADLINE)[0] for w in workers]

    assert [w.returncode for w in workers] == [0, 0]
    done = [int(out.split("Worker stopped after ")[1].split()[0]) for out in outputs]
    assert sum(done) == 300
    assert min(done) > 0, f"one worker did everything: {done}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_stops_the_worker_cleanly(app, server_env, sig):
    env = {**os.environ, **server_env}
    cmd = [sys.executable, "-m", "flask", "--app", "swagstore", "worker"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("Worker started")
    began = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0
    assert "Worker stopped" in out
    assert time.monotonic() - began < 5


def test_a_queued_task_runs_within_seconds_of_its_commit(app, live_server):
    make_product(app, stock=1)
    began = time.monotonic()
    queue(app, 1)
    wait_for(lambda: task_rows(app) == [("done", 1, 1)], "the task to run")
    # The worker's idle sleep is WORKER_IDLE_SECONDS (0.25 s); allow for a loaded machine.
    assert time.monotonic() - began < 5


def test_a_killed_worker_is_started_again_within_seconds(app, live_server):
    first = live_server.worker_pid()
    assert live_server.health()["worker"]["pid"] == first
    os.kill(first, signal.SIGKILL)
    began = time.monotonic()

    health = wait_for(
        lambda: (h := live_server.health()) and h["worker"]["pid"] not in (None, first) and h,
        "a new worker's heartbeat",
    )
    assert time.monotonic() - began < 15
    assert health["status"] == "ok" and health["worker"]["ok"]
    assert live_server.worker_pid() == health["worker"]["pid"]


def test_a_dead_worker_shows_on_healthz_until_it_is_back_then_queued_tasks_run_once(
    app, live_server
):
    make_product(app, stock=1)
    dead = live_server.worker_pid()
    restart_loop = parent_of(dead)
    os.kill(restart_loop, signal.SIGSTOP)  # hold its restart, to see the gap on /healthz
    try:
        os.kill(dead, signal.SIGKILL)
        queue(app, 20)
        health = wait_for(
            lambda: (h := live_server.health()) and not h["worker"]["ok"] and h,
            "/healthz to report the worker gone",
        )
        assert health["status"] == "degraded"
        assert health["worker"]["seen_seconds_ago"] > worker.STALE_SECONDS
        assert health["database"] == "ok"
        assert task_rows(app) == [("pending", 0, 20)]
    finally:
        os.kill(restart_loop, signal.SIGCONT)

    health = wait_for(
        lambda: (h := live_server.health()) and h["worker"]["ok"] and h, "the worker back"
    )
    assert health["status"] == "ok" and health["worker"]["pid"] != dead
    wait_for(lambda: task_rows(app) == [("done", 1, 20)], "the queued tasks, run once")


def sales(app) -> int:
    with app.app_context():
        n = db.session.scalar(
            select(func.count()).select_from(Sale).where(Sale.status == "fulfilled")
        )
        db.session.rollback()
    return n


def thread_records(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_web_processes_start_no_threads(app, runner, server_env, tmp_path):
    """Every thread a web process starts is gunicorn's own; the worker starts none."""
    log = tmp_path / "threads.jsonl"
    env = {
        **server_env,
        "PYTHONPATH": str(ROOT / "tests" / "thread_probe"),
        "SWAGSTORE_TEST_THREAD_LOG": str(log),
        "SWAGSTORE_PURCHASE_MODE": "reserved_checkout",
        "SWAGSTORE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    make_product(app, stock=5)
    server = LiveServer(env, workers=2, threads=4)
    sandbox = start_sandbox(app, server)
    try:
        # A webhook, a stream, a purchase (which calls the sandbox over HTTP) and staff pages.
        with app.app_context():
            secret = payments.webhook_secret(app)
        body = json.dumps(make_event(make_session())).encode()
        hook = requests.post(
            server.url + "/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": sign(body, secret)},
            timeout=DEADLINE,
        )
        assert hook.json()["outcome"] == "applied"
        with requests.get(server.url + "/stream", stream=True, timeout=DEADLINE) as live:
            assert next(live.iter_lines()).startswith(b"retry:")
        bought = requests.get(server.url + "/buy/tee-m", allow_redirects=False, timeout=DEADLINE)
        assert bought.status_code == 303
        sandbox.pay(bought.headers["Location"])
        http, token = log_in_http(server.url)
        with http:
            restock = http.post(
                server.url + "/admin/stock/tee-m/restock",
                data={"csrf_token": token, "quantity": "2"},
                allow_redirects=False,
                timeout=DEADLINE,
            )
            assert restock.status_code == 303
            assert http.get(server.url + "/admin", timeout=DEADLINE).status_code == 200
        # The worker delivered the purchase's event: both sales are in.
        wait_for(lambda: sales(app) == 2, "the purchase's event to be delivered")
        processes = {pid: cmdline(pid) for pid in server.processes()}
    finally:
        payments.close(app)
        server.stop()

    records = thread_records(log)
    by_swagstore = [r for r in records if any("/swagstore/" in f for f in r["stack"])]
    assert by_swagstore == [], "swagstore code started a thread"
    # Python processes only: the shell honcho starts each Procfile line with names it too.
    python = {pid: cmd for pid, cmd in processes.items() if not cmd.startswith("/bin/sh")}
    gunicorn = {pid for pid, cmd in python.items() if "gunicorn" in cmd}
    web = [r for r in records if r["pid"] in gunicorn]
    assert web, "the probe saw no request thread: is it loaded?"
    # gthread's pool, started from gunicorn's loop: one thread per request in flight. The
    # master starts none (its control socket is off in gunicorn.conf.py).
    assert all(r["name"].startswith("ThreadPoolExecutor-") for r in web), [
        (r["name"], r["stack"][-6:]) for r in web if not r["name"].startswith("ThreadPool")
    ]
    assert all(any("gunicorn/workers/gthread.py" in f for f in r["stack"]) for r in web)
    flask_worker = {pid for pid, cmd in python.items() if "swagstore worker" in cmd}
    assert flask_worker and not [r for r in records if r["pid"] in flask_worker]
