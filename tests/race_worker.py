"""One OS process in a stock race: its own app, its own connection, one SQLite file.

Usage: race_worker.py DB_URI OP SKU ATTEMPTS START_AT [STORE]
Prints the number of successful operations as JSON.
"""

import json
import sys
import time

from swagstore import create_app, inventory
from swagstore.models import db


def main() -> None:
    uri, op, sku, attempts, start_at = sys.argv[1:6]
    store = sys.argv[6] if len(sys.argv) > 6 else "booth"
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "race"})
    change = {"take": inventory.take, "hold": inventory.hold}[op]
    ok = 0
    with app.app_context():
        db.session.execute(db.select(1))  # connect before the start line
        db.session.rollback()
        time.sleep(max(0.0, float(start_at) - time.time()))
        for _ in range(int(attempts)):
            level = change(sku, store, 1, ref=f"race-{op}")
            db.session.commit()
            ok += level is not None
    print(json.dumps({"op": op, "store": store, "ok": ok}))


if __name__ == "__main__":
    main()
