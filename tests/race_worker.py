"""One OS process in a stock race: its own app, its own connection, one SQLite file.

Usage: race_worker.py DB_URI OPS SKU ATTEMPTS [STORE]
OPS is "take", "hold", or "take,hold" to alternate between them attempt by attempt.
Connects, prints "ready", and races when a line arrives on stdin (see conftest.race), so
a slow start on a busy machine cannot leave one process running alone.
Prints the number of successful operations, in all and per operation, as JSON.
"""

import json
import sys

from swagstore import create_app, inventory
from swagstore.models import db


def main() -> None:
    uri, op, sku, attempts = sys.argv[1:5]
    changes = {"take": inventory.take, "hold": inventory.hold}
    store = sys.argv[5] if len(sys.argv) > 5 else "booth"
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "race"})
    names = op.split(",")
    ok = {name: 0 for name in names}
    with app.app_context():
        db.session.execute(db.select(1))  # connect before the start line
        db.session.rollback()
        print("ready", flush=True)
        sys.stdin.readline()  # the start line
        for n in range(int(attempts)):
            name = names[n % len(names)]
            level = changes[name](sku, store, 1, ref=f"race-{name}")
            db.session.commit()
            ok[name] += level is not None
    print(json.dumps({"op": op, "store": store, "ok": sum(ok.values()), "by_op": ok}))


if __name__ == "__main__":
    main()
