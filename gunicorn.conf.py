"""Gunicorn settings for the booth laptop (the `web:` line of the Procfile)."""

import os
import signal
import socket

bind = os.environ.get("SWAGSTORE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("SWAGSTORE_WORKERS", "2"))
# gthread: each request, an open kiosk stream included, holds one thread of its worker.
# Keep STREAM_MAX_CLIENTS (default 16) below `threads`, so webhooks, buys and staff pages
# always find a free thread. Not gevent: SQLite calls block in C, so one waiting on the
# write lock would stall every greenlet of its worker.
worker_class = "gthread"
# Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections
# over the workers; with one shared socket the first worker to wake takes nearly every
# long-lived stream until it is full.
reuse_port = True
threads = int(os.environ.get("SWAGSTORE_THREADS", "32"))
# Streams send a ping every 15 s, so a quiet client is never mistaken for a hung worker.
timeout = 60
graceful_timeout = 10
keepalive = 5
# gunicorn 24+ opens a control socket (and a thread for it) in ~/.gunicorn, shared by every
# gunicorn of the user; the booth has no use for it.
control_socket_disable = True
accesslog = "-"
# No query strings or headers in the log: they may carry session ids.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def on_starting(server):
    """Refuse to start beside another booth already answering on the same address."""
    # reuse_port (above) would let a second `make run` share the port without a word, and
    # two booths would then take turns answering the kiosk.
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        return
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.settimeout(1)
        if probe.connect_ex((host, int(port))) == 0:
            raise SystemExit(
                f"{bind} is already in use: is the booth already running (another make run)? "
                "Stop it first, or give this one another PORT."
            )


def post_worker_init(worker):
    """End this worker's streams at their next tick on SIGTERM, so a restart never waits."""
    from swagstore import stream

    streams = stream.streams(worker.wsgi)
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        streams.close()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop)
