"""The measured tree's gunicorn.conf.py for the baselines, without its hooks.

Settings (workers, threads, worker class, keep-alive, access log) stay the tree's, so a
baseline runs under exactly what the store runs under; the hooks go, because they reach
into the store's app (its streams), which a baseline does not have.
"""

import os
from types import FunctionType

with open(os.environ["BENCH_TREE_GUNICORN_CONF"]) as f:
    exec(f.read())
for _name, _value in list(globals().items()):
    if isinstance(_value, FunctionType):
        del globals()[_name]
