"""The one background worker: everything that is not an answer to a request.

`flask --app swagstore worker` loops in rounds. A round records a heartbeat (at most every
HEARTBEAT_SECONDS, so /healthz can tell a worker that is gone), then runs its jobs: end
holds whose time is up, run due outbox tasks, poll Stripe's events (EVENT_SOURCE poll: one
poller per database, by a lease), and in sandbox mode expire due sessions and deliver due
webhooks.
A round that found work is followed at once by the next; an idle one sleeps
WORKER_IDLE_SECONDS. Every job claims its rows with a guarded UPDATE (tasks with a lease),
so a second worker started by mistake shares the work and never doubles it. Web
processes start no threads: they only write rows for the worker to find.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from . import events, payments, tasks
from .models import Setting, db, read_only

log = logging.getLogger(__name__)

# A beat is a write (and an fsync on SQLite), so a busy loop writes one at most this often.
HEARTBEAT_SECONDS = 2.0
# /healthz flags a worker whose last beat is older than this.
STALE_SECONDS = 10.0
# Tasks per round: the heartbeat and a stop request are checked at least this often.
TASKS_PER_ROUND = 10

Job = Callable[[], int]


def heartbeat_key(store: str) -> str:
    """Return the Setting key of this store's worker heartbeat."""
    return f"worker_heartbeat:{store}"


def beat(store: str) -> None:
    """Record that this store's worker is alive, now, with its pid."""
    key = heartbeat_key(store)
    value = json.dumps({"at": round(time.time(), 3), "pid": os.getpid()})
    done = db.session.execute(update(Setting).where(Setting.key == key).values(value=value))
    if not done.rowcount:
        db.session.add(Setting(key=key, value=value))
    try:
        db.session.commit()
    except IntegrityError:
        # A second worker made the row in the same instant: its beat counts as well.
        db.session.rollback()


@dataclass(frozen=True)
class Seen:
    """The last heartbeat of a store's worker, as /healthz reports it."""

    seconds_ago: float | None
    pid: int | None

    @property
    def ok(self) -> bool:
        return self.seconds_ago is not None and self.seconds_ago <= STALE_SECONDS


def last_seen(store: str) -> Seen:
    """Return when this store's worker last beat, read without taking the write lock."""
    with read_only():
        value = db.session.scalar(select(Setting.value).where(Setting.key == heartbeat_key(store)))
    if value is None:
        return Seen(None, None)
    beat_ = json.loads(value)
    return Seen(round(max(0.0, time.time() - beat_["at"]), 1), beat_["pid"])


def jobs(app: Flask) -> list[Job]:
    """Return the jobs each round runs for this app's config, in order."""
    config = app.config
    found: list[Job] = []
    if config["WORKER_TASKS"]:
        lease = config["TASK_LEASE_SECONDS"]
        found.append(lambda: tasks.run_round(lease, limit=TASKS_PER_ROUND))
    if config["SANDBOX"] and config["SANDBOX_DELIVER"]:
        # Imported only in sandbox mode: a store with a real key never loads the sandbox.
        from .sandbox import delivery

        found.append(delivery.job(app))
    if events.source(config) == "poll":
        found.append(events.Poller(float(config["POLL_SECONDS"]), payments.gateway))
    return found


def run_round(round_jobs: list[Job]) -> int:
    """Run every job once; return how much work they found (0: the worker may sleep)."""
    done = 0
    for job in round_jobs:
        try:
            done += job()
        except Exception:
            # One failing job (Stripe down, database locked) must not stop the others.
            log.exception("worker: a job failed; trying again next round")
            db.session.rollback()
        finally:
            db.session.remove()
    return done


class _Stop:
    """Set by SIGTERM or SIGINT; the loop ends at the next round."""

    requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


def run(
    app: Flask, *, rounds: int | None = None, started: Callable[[], None] | None = None
) -> int:
    """Run rounds until SIGTERM or Ctrl-C (or `rounds` rounds); return the work done.

    `started` is called once the signals are caught, so from then on a stop is clean.
    """
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    if started is not None:
        started()
    store = app.config["STORE_ID"]
    idle = app.config["WORKER_IDLE_SECONDS"]
    last_beat = 0.0
    count = done = 0
    try:
        with app.app_context():
            round_jobs = jobs(app)
            while not stop.requested and (rounds is None or count < rounds):
                count += 1
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    try:
                        beat(store)
                        last_beat = time.monotonic()
                    except Exception:
                        log.exception("worker: heartbeat failed")
                        db.session.rollback()
                found = run_round(round_jobs)
                done += found
                if not found and not stop.requested:
                    time.sleep(idle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return done
