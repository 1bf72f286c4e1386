"""Gunicorn settings for the booth laptop (`make run`)."""

import os
import signal

bind = os.environ.get("SWAGSTORE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("SWAGSTORE_WORKERS", "2"))
# gthread: every open kiosk stream holds one thread, parked between events (the stream's
# reader writes them to its socket), so a worker serves `threads` requests at once. Each
# worker admits threads - 8 streams (unless STREAM_MAX_CLIENTS is set; see
# post_worker_init) and keeps 8 threads for webhooks, buys and staff pages; a stream
# beyond that is told to retry later. The defaults take 2 x 56 = 112 screens; for more,
# raise SWAGSTORE_THREADS (an open stream costs about 52 KiB, bench/stream_fanout.py). Not
# gevent: SQLite calls block in C, so one waiting on the write lock would stall every
# greenlet of its worker.
worker_class = "gthread"
# Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections
# over the workers; with one shared socket the first worker to wake takes nearly every
# long-lived stream until it is full.
reuse_port = True
threads = int(os.environ.get("SWAGSTORE_THREADS", "64"))
# Streams send a ping every 15 s, so a quiet client is never mistaken for a hung worker.
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = "-"
# No query strings or headers in the log: they may carry session ids.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'

STREAM_SPARE_THREADS = 8


def post_worker_init(worker):
    """Fit the worker's stream limit to its threads; end streams at once on SIGTERM."""
    from swagstore import stream

    app = worker.wsgi
    if app.config["STREAM_MAX_CLIENTS"] is None:  # not set in config.py or the environment
        limit = max(1, worker.cfg.threads - STREAM_SPARE_THREADS)
        stream.broker(app).max_clients = limit
    # Without this a stopping worker waits graceful_timeout for streams that never end.
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        stream.close_all()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop)
