"""The outbox: tasks are claimed once, retried with backoff, and failed with a reason."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conftest import ROOT, STORE, both_databases, free_port, make_product
from swagstore import tasks
from swagstore.models import PaymentLink, Task, db, utcnow


@pytest.fixture
def app_config(app_config):
    # Nothing listens here: every Stripe call fails to connect, a real transient fault.
    return {**app_config, "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}"}


def add_link(app, sku="tee-m"):
    with app.app_context():
        db.session.add(
            PaymentLink(
                id=f"plink_{sku}", sku=sku, store=STORE, url="https://pay/x", price_id="price_x"
            )
        )
        db.session.commit()


def queue(app, n, kind="sync_link", **args):
    with app.app_context():
        ids = [tasks.enqueue(kind, args or {"sku": "tee-m", "store": STORE}).id for _ in range(n)]
        db.session.commit()
        return ids


def task(app, task_id):
    with app.app_context():
        return db.session.get(Task, task_id)


@both_databases
def test_racing_claimers_take_each_task_exactly_once(app):
    """Mutation tried: claim's UPDATE without its `due` guard: [postgres] claimed tasks twice.

    On SQLite the write lock alone serialises the claimers, so only PostgreSQL proves the guard.
    """
    ids = queue(app, 300)
    claimers = 8
    barrier = threading.Barrier(claimers)

    def claim_all(_: int) -> list[int]:
        with app.app_context():
            db.session.connection()  # connected before the start line
            db.session.rollback()
            barrier.wait(timeout=60)
            claimed = []
            while (task := tasks.claim()) is not None:
                claimed.append(task.id)
            return claimed

    with ThreadPoolExecutor(claimers) as pool:
        claimed = list(pool.map(claim_all, range(claimers)))
    assert sorted(i for mine in claimed for i in mine) == sorted(ids)
    assert sum(1 for mine in claimed if mine) > 1, "the claimers did not overlap"
    with app.app_context():
        rows = db.session.execute(
            select(Task.status, Task.attempts, func.count()).group_by(Task.status, Task.attempts)
        ).all()
    assert [tuple(r) for r in rows] == [("running", 1, 300)]


@both_databases
def test_two_runners_never_run_the_same_task(app, server_env):
    make_product(app, stock=1)  # no payment link: each sync finds nothing to switch
    queue(app, 400)
    cmd = [sys.executable, "-m", "flask", "--app", "swagstore", "run-tasks", "--once"]
    env = {**os.environ, **server_env}
    runners = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [r.communicate(timeout=300)[0] for r in runners]

    assert [r.returncode for r in runners] == [0, 0, 0, 0]
    ran = [int(out.split()[1]) for out in outputs if out.startswith("Ran ")]
    assert sum(ran) == 400
    assert len(ran) > 1, "the runners did not overlap"
    with app.app_context():
        rows = db.session.execute(
            select(Task.status, Task.attempts, func.count()).group_by(Task.status, Task.attempts)
        ).all()
    assert [tuple(r) for r in rows] == [("done", 1, 400)]


def test_a_transient_failure_is_retried_later_with_backoff(app):
    make_product(app, stock=1)
    add_link(app)
    (task_id,) = queue(app, 1)

    before = utcnow()
    with app.app_context():
        assert tasks.run_due() == 1

    retried = task(app, task_id)
    assert (retried.status, retried.attempts) == ("pending", 1)
    assert retried.last_error
    # The first retry waits at least half the base delay after the failure.
    assert retried.run_after >= before + timedelta(seconds=tasks.BACKOFF_BASE_SECONDS / 2)


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap():
    for attempts in range(1, 12):
        full = min(tasks.BACKOFF_CAP_SECONDS, tasks.BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        delays = {tasks.backoff_seconds(attempts) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1


def test_a_lapsed_lease_lets_another_runner_take_the_task(app):
    make_product(app, stock=1)
    (task_id,) = queue(app, 1)
    with app.app_context():
        first = tasks.claim(lease_seconds=-1)  # its runner "died": the lease already lapsed
        second = tasks.claim()
        third = tasks.claim()

    assert (first.id, second.id, third) == (task_id, task_id, None)
    assert task(app, task_id).attempts == 2


def test_a_task_nobody_knows_how_to_run_is_failed_with_the_reason(app):
    (task_id,) = queue(app, 1, kind="teleport", sku="tee-m")

    with app.app_context():
        tasks.run_due()

    failed = task(app, task_id)
    assert failed.status == "failed"
    assert "teleport" in failed.last_error


def test_run_tasks_once_says_when_nothing_was_due(runner):
    result = runner.invoke(args=["run-tasks", "--once"])
    assert (result.exit_code, result.output) == (0, "No task was due.\n")
