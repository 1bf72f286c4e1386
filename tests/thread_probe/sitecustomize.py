"""Log every thread a process starts, with the stack that started it (tests only).

test_worker puts this folder on PYTHONPATH of a live server, so Python imports it at
start-up in honcho, gunicorn and the worker, and every forked gunicorn worker inherits
it. Each Thread.start() appends one JSON line to SWAGSTORE_TEST_THREAD_LOG.
"""

import json
import os
import sys
import threading
import traceback

_LOG = os.environ.get("SWAGSTORE_TEST_THREAD_LOG")

if _LOG:
    _start = threading.Thread.start

    def _logged_start(self, *args, **kwargs):
        record = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": sys.argv,
            "name": self.name,
            "stack": [f"{frame.filename}:{frame.name}" for frame in traceback.extract_stack()],
        }
        with open(_LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        return _start(self, *args, **kwargs)

    threading.Thread.start = _logged_start
