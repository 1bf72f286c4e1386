"""The back office for booth staff under /admin: stock, sales, tasks, activity, report."""

from __future__ import annotations

import io
import math
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.wrappers import Response as BaseResponse

from .. import auth, backoffice, charts, clock, money, offer, sales, security
from ..models import utcnow
from ..sales import Refused, whole_number

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()
PUBLIC = {"admin.login"}
# Where a refused action sends the staff back to, by endpoint (the stock page otherwise).
BACK = {
    "admin.refund": "admin.sales_page",
    "admin.retry": "admin.tasks",
    "admin.hand_over": "admin.handover",
}
# A row id in a URL: the database's integer (PostgreSQL's is 32-bit); a larger number is
# 404 here rather than an overflow in the driver (a 500).
ROW_ID = "int(max=2147483647)"


@bp.before_request
def guard() -> tuple[str, int] | BaseResponse | None:
    """Keep the back office closed without a password, and to anyone not logged in."""
    if not current_app.config["ADMIN_PASSWORD"]:
        return render_template("admin/closed.html"), 403
    if request.endpoint not in PUBLIC and not _logged_in():
        # Logged out, expired, or opened with an older password: the cookie is worth nothing.
        session.clear()
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("admin.login"))
        return render_template("admin/login.html", error="Please log in first."), 401
    csrf.protect()
    return None


@bp.errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> tuple[str, int]:
    """Refuse a form that did not come from this back office's own page."""
    return render_template("admin/csrf.html", reason=error.description), 400


@bp.errorhandler(Refused)
def refused(error: Refused) -> BaseResponse:
    """Show staff why an action was refused, on the page they came from."""
    flash(str(error), "error")
    return redirect(url_for(BACK.get(request.endpoint or "", "admin.stock")), 303)


@bp.route("/login", methods=("GET", "POST"))
def login() -> ResponseReturnValue:
    """Log staff in with the shared password, unless this client guessed wrong too often."""
    if request.method == "GET":
        return render_template("admin/login.html")
    config = current_app.config
    attempt = auth.login(
        request.form.get("password", ""),
        config["ADMIN_PASSWORD"],
        remote=security.client_address(),
        lifetime=config["PERMANENT_SESSION_LIFETIME"],
    )
    if attempt.locked_until is not None:
        wait = max(1, math.ceil((attempt.locked_until - utcnow()).total_seconds()))
        until = clock.local(attempt.locked_until, _zone())
        error = f"Too many wrong passwords from this device: try again after {until:%H:%M:%S}."
        return render_template("admin/login.html", error=error), 429, {"Retry-After": str(wait)}
    if attempt.token is None:
        return render_template("admin/login.html", error=_wrong(attempt.tries_left)), 401
    session.clear()
    session.permanent = True  # the cookie lapses with the staff session
    session["staff"] = attempt.token
    session["admin"] = True
    session["actor"] = auth.actor(request.form.get("name"))
    return redirect(url_for("admin.stock"), 303)


@bp.post("/logout")
def logout() -> BaseResponse:
    """Log staff out: this session's cookie opens nothing any more."""
    auth.logout(session.get("staff"))
    session.clear()
    return redirect(url_for("admin.login"), 303)


@bp.get("")
def stock() -> str:
    """Show every item with its counts, link state and the stock actions."""
    manual = current_app.config["LINK_CAPTURE"] == "manual"
    return render_template(
        "admin/stock.html",
        rows=backoffice.stock_rows(_store()),
        uncaptured=sales.uncaptured(_store()) if manual else 0,
    )


@bp.post("/stock/<sku>/restock")
def restock(sku: str) -> BaseResponse:
    """Add delivered units to an item."""
    quantity = whole_number(request.form.get("quantity"), "Restock", minimum=1)
    level = backoffice.restock(sku, _store(), quantity, actor=session["actor"])
    item = offer.item_labels(_store()).get(sku, sku)
    return _done(f"Restocked {quantity} × {item}: {level.available} available.")


@bp.post("/stock/<sku>/count")
def count(sku: str) -> BaseResponse:
    """Set an item's stock to a counted number, with a reason."""
    counted = whole_number(request.form.get("counted"), "Counted stock", minimum=0)
    reason = request.form.get("reason", "")
    level = backoffice.count(sku, _store(), counted, reason, actor=session["actor"])
    item = offer.item_labels(_store()).get(sku, sku)
    return _done(f"Counted {item}: {level.on_hand} on hand, {level.available} available.")


@bp.post("/stock/<sku>/sell")
def sell(sku: str) -> BaseResponse:
    """Hand units over for cash or as a giveaway."""
    quantity = whole_number(request.form.get("quantity"), "Quantity", minimum=1)
    kind, note = request.form.get("kind", ""), request.form.get("note")
    sale = sales.sell(sku, _store(), kind, quantity, actor=session["actor"], note=note)
    item = offer.item_labels(_store()).get(sku, sku)
    if sale.kind == "cash":
        amount = _money(sale.amount, sale.currency)
        return _done(f"Collect {amount} in cash for {quantity} × {item} (sale {sale.id}).")
    return _done(f"Recorded giveaway sale {sale.id}: {quantity} × {item}.")


@bp.post("/stock/<sku>/off-sale")
def off_sale(sku: str) -> BaseResponse:
    """Take an item off sale (link off, hidden on the kiosk) or put it back (on=yes)."""
    on_sale = request.form.get("on") == "yes"
    backoffice.set_on_sale(sku, _store(), on_sale, actor=session["actor"])
    item = offer.item_labels(_store()).get(sku, sku)
    return _done(f"{item} is {'back on sale' if on_sale else 'off sale'}.")


@bp.get("/handover")
def handover() -> str:
    """List paid card sales waiting at the table, newest first, with their pickup codes."""
    config = current_app.config
    # Plain payment links with no PUBLIC_URL end on Stripe's own page, which shows no code.
    codes = bool(config["PUBLIC_URL"]) or config["PURCHASE_MODE"] != "payment_link"
    return render_template(
        "admin/handover.html", pickups=sales.to_hand_over(_store()), buyers_see_codes=codes
    )


@bp.post(f"/sales/<{ROW_ID}:sale_id>/hand-over")
def hand_over(sale_id: int) -> BaseResponse:
    """Record that a paid card sale was handed over (once)."""
    done = sales.hand_over(sale_id, _store(), actor=session["actor"])
    flash(f"Handed over {done.code}: {done.quantity} × {done.label}.")
    return redirect(url_for("admin.handover"), 303)


@bp.get("/sales")
def sales_page() -> str:
    """List sales, newest first, optionally with one status (400 for an unknown one)."""
    try:
        status = sales.parse_status(request.args.get("status"))
    except sales.UnknownStatus as e:
        abort(400, description=str(e))
    key = current_app.config["STRIPE_SECRET_KEY"]
    return render_template(
        "admin/sales.html",
        rows=sales.list_sales(_store(), status),
        status=status,
        statuses=sales.STATUSES,
        dashboard=lambda payment_intent: sales.dashboard_url(payment_intent, key),
    )


@bp.post(f"/sales/<{ROW_ID}:sale_id>/refund")
def refund(sale_id: int) -> BaseResponse:
    """Queue a refund of a card sale, returning its units to stock if asked."""
    restock = request.form.get("restock") == "yes"
    sales.refund(sale_id, restock=restock, actor=session["actor"])
    flash(f"Refund of sale {sale_id} queued" + (", units back in stock." if restock else "."))
    return redirect(url_for("admin.sales_page"), 303)


@bp.get("/sales.csv")
def sales_csv() -> Response:
    """Download every sale as CSV (the same columns as `flask report --csv`)."""
    out = io.StringIO()
    sales.write_csv(sales.report_rows(_store(), _zone()), out)
    filename = f"sales-{_store()}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


@bp.get("/report")
def report() -> str:
    """Show sales per hour and per item as charts, with the day's totals."""
    totals = sales.totals(_store(), _zone())
    per_hour = charts.bars(
        [(f"{hour:%a %H:00}", n) for hour, n in totals.per_hour], title="Units sold per hour"
    )
    per_item = charts.bars(
        [(item.label, item.units) for item in totals.per_item], title="Units sold per item"
    )
    return render_template(
        "admin/report.html", totals=totals, per_hour=per_hour, per_item=per_item
    )


@bp.get("/tasks")
def tasks() -> str:
    """List Stripe tasks not yet done, with their last error."""
    return render_template(
        "admin/tasks.html",
        tasks=backoffice.open_tasks(),
        unmatched=backoffice.unmatched_events(),
    )


@bp.post(f"/tasks/<{ROW_ID}:task_id>/retry")
def retry(task_id: int) -> BaseResponse:
    """Make a pending or failed task due now."""
    backoffice.retry(task_id)
    flash(f"Task {task_id} will run again now.")
    return redirect(url_for("admin.tasks"), 303)


@bp.get("/activity")
def activity() -> str:
    """Show the stock-event log as an audit trail."""
    return render_template("admin/activity.html", events=backoffice.activity(_store()))


def _logged_in() -> bool:
    return auth.session_valid(session.get("staff"), current_app.config["ADMIN_PASSWORD"])


def _store() -> str:
    return current_app.config["STORE_ID"]


def _zone() -> ZoneInfo:
    return clock.booth_zone(current_app)


def _money(amount: int, currency: str) -> str:
    return money.format_money(amount, currency, current_app.config["LOCALE"])


def _done(message: str) -> BaseResponse:
    flash(message)
    return redirect(url_for("admin.stock"), 303)


def _wrong(tries_left: int | None) -> str:
    """Say a password was wrong, and how close this device is to being locked out."""
    minutes = auth.WINDOW.seconds // 60
    if not tries_left:
        return f"Wrong password. This device is now locked out for {minutes} minutes."
    tries = "1 more try" if tries_left == 1 else f"{tries_left} more tries"
    return (
        f"Wrong password. {tries} from this device, then it is locked out for {minutes} minutes."
    )
