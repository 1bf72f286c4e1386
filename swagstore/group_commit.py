"""Group commit: one writer thread per process applies webhook events in batches.

A webhook may answer 2xx only once its event is durable, so each event used to cost one
transaction of its own: a new session, SQLite's write lock, and an fsync at commit, one
event at a time. Under a burst the request threads now hand their events to this
process's writer, which applies whatever has queued up (up to MAX_BATCH) in one
transaction with `fulfilment.apply_all` and commits once; each request answers after that
commit, with its own event's result. A quiet booth sees batches of one and no extra wait:
the writer never holds a batch open for more to arrive.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from flask import Flask, current_app

from . import fulfilment
from .models import db

MAX_BATCH = 64
# A writer with nothing to do for this long ends; the next event starts a new one.
IDLE_SECONDS = 5.0
EXTENSION = "swagstore.group_commit"


class Unanswered(Exception):
    """The writer did not answer in time; the event may or may not be applied yet."""


class _Pending:
    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.done = threading.Event()
        self.outcome: fulfilment.Result | Exception | None = None

    def finish(self, outcome: fulfilment.Result | Exception) -> None:
        self.outcome = outcome
        self.done.set()


class Writer:
    """Queue events from request threads and apply them in batches in one thread."""

    def __init__(self, app: Flask, wait_seconds: float) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0  # committed (or failed) batches, for tests and benchmarks

    def apply(self, event: dict[str, Any]) -> fulfilment.Result:
        """Apply one event in the next batch and return its result once committed."""
        pending = _Pending(event)
        self._queue.put(pending)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="swagstore-group-commit", daemon=True
                )
                self._thread.start()
        if not pending.done.wait(self.wait_seconds):
            raise Unanswered(f"event {event.get('id')!r} not committed in {self.wait_seconds} s")
        if isinstance(pending.outcome, Exception):
            raise pending.outcome
        assert pending.outcome is not None
        return pending.outcome

    def _run(self) -> None:
        while True:
            try:
                with self.app.app_context(), _writers_queue() as turn:
                    while (batch := self._take_batch()) is not None:
                        self._commit(batch, turn)
                    return
            except Exception:
                # A dead writer would strand every event queued behind it: log, pause, go on.
                self.app.logger.exception("group commit writer failed; starting again")
                time.sleep(1)

    def _commit(
        self, batch: list[_Pending], turn: Callable[[], AbstractContextManager[None]]
    ) -> None:
        try:
            with turn():
                outcomes = fulfilment.apply_all([p.event for p in batch])
        except Exception as e:
            # Nothing of the batch was committed: every event answers with the error.
            outcomes = [e] * len(batch)
        self.batches += 1
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.finish(outcome)
        db.session.remove()

    def _take_batch(self) -> list[_Pending] | None:
        """Wait for an event, then take every other one queued (up to MAX_BATCH)."""
        while True:
            try:
                batch = [self._queue.get(timeout=IDLE_SECONDS)]
                break
            except queue.Empty:
                with self._lock:
                    # Checked under the lock apply() starts threads with, so no event is
                    # left queued behind a writer that is ending.
                    if self._queue.empty():
                        self._thread = None
                        return None
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch


@contextmanager
def _writers_queue() -> Iterator[Callable[[], AbstractContextManager[None]]]:
    """Yield a context that takes this database's turn among the writers of all processes.

    SQLite makes a writer that finds the database locked sleep and retry, up to 100 ms at a
    time, so a writer whose process always has the next batch ready takes the lock again
    and again while the other process's writer sleeps: we measured waits of 3 s with two
    workers. An flock next to the database file instead wakes a waiting writer as soon as
    the lock is let go. PostgreSQL queues its waiters itself.
    """
    path = _database_file()
    if path is None:
        yield nullcontext
        return
    fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def turn() -> Iterator[None]:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    try:
        yield turn
    finally:
        os.close(fd)


def _database_file() -> str | None:
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def init_app(app: Flask) -> None:
    """Give the app its group-commit writer (its thread starts with the first event)."""
    app.config.setdefault("WEBHOOK_WAIT_SECONDS", 30)
    app.extensions[EXTENSION] = Writer(app, float(app.config["WEBHOOK_WAIT_SECONDS"]))


def apply(event: dict[str, Any]) -> fulfilment.Result:
    """Apply an event through this process's writer: durable when this returns."""
    writer: Writer = current_app.extensions[EXTENSION]
    return writer.apply(event)
