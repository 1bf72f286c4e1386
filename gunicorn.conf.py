"""Gunicorn settings for the booth laptop (`make run`)."""

import os

bind = os.environ.get("SWAGSTORE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("SWAGSTORE_WORKERS", "2"))
# Threads, not processes alone: kiosk streams are long-lived and must not pin a worker each.
worker_class = "gthread"
threads = int(os.environ.get("SWAGSTORE_THREADS", "32"))
# Streams send a ping every 15 s, so a quiet client is never mistaken for a hung worker.
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = "-"
# No query strings or headers in the log: they may carry session ids.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
