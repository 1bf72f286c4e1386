"""Flask commands for the booth: `flask --app swagstore <command>`."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import insert, select

from . import (
    catalog,
    clock,
    events,
    money,
    payments,
    preflight,
    sales,
    schema,
    stripe_sync,
    tasks,
    worker,
)
from .models import Store, db


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Bring the database up to date and add this booth's store row (harmless to rerun)."""
    init_db()
    click.echo(f"Database ready: {db.engine.url.render_as_string(hide_password=True)}")


def init_db() -> None:
    """Upgrade the schema to the newest revision and add this booth's store, in one transaction."""
    store = current_app.config["STORE_ID"]
    with db.engine.begin() as conn:
        schema.upgrade(conn)
        if conn.scalar(select(Store.id).where(Store.id == store)) is None:
            conn.execute(insert(Store).values(id=store, name=store))
    if current_app.config["SANDBOX"]:
        from .sandbox.models import create_tables

        create_tables()


@click.command("load-catalog")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--reset-stock", is_flag=True, help="Also set stock of existing items to the file's."
)
def load_catalog_command(path: str, reset_stock: bool) -> None:
    """Load products and stock from a TOML catalog into this booth's store."""
    try:
        items = catalog.read(path)
        result = catalog.load(items, current_app.config["STORE_ID"], reset_stock=reset_stock)
    except catalog.CatalogError as e:
        db.session.rollback()
        raise click.ClickException(
            f"{path} was not loaded; nothing changed:\n  " + "\n  ".join(e.problems)
        ) from None
    db.session.commit()
    for sku in result.added:
        click.echo(f"  {sku}: new")
    for sku in result.updated:
        click.echo(f"  {sku}: updated")
    for sku in result.unchanged:
        click.echo(f"  {sku}: unchanged")
    click.echo(
        f"Loaded {len(items)} items from {path}: {len(result.added)} new, "
        f"{len(result.updated)} updated, {len(result.unchanged)} unchanged, "
        f"{len(result.restocked)} stock reset."
    )
    if result.added or result.updated:
        click.echo("New or changed items reach Stripe with: flask --app swagstore sync-stripe")


@click.command("report")
@with_appcontext
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write every sale to this CSV file ('-' for standard output).",
)
def report_command(csv_path: str | None) -> None:
    """Print the day's totals per item and status; optionally write every sale as CSV."""
    store, tz = current_app.config["STORE_ID"], clock.booth_zone(current_app)
    if csv_path == "-":
        out = io.StringIO()
        sales.write_csv(sales.report_rows(store, tz), out)
        click.echo(out.getvalue(), nl=False)
        return
    totals = sales.totals(store, tz)
    locale = current_app.config["LOCALE"]

    def takings(amounts: dict[str, int]) -> str:
        return ", ".join(money.format_money(n, cur, locale) for cur, n in amounts.items())

    click.echo(f"Store {store}: units sold and takings per item (refunds and voids not counted)")
    width = max((len(item.label) for item in totals.per_item), default=0)
    for item in totals.per_item:
        click.echo(f"  {item.label:<{width}}  {item.units:>6}  {takings(item.takings)}")
    click.echo(f"Units sold: {totals.units}")
    click.echo(f"Takings: {takings(totals.takings) or 'none'}")
    click.echo("Units by kind: " + _pairs(totals.by_kind))
    click.echo("Sales by status: " + _pairs(totals.by_status))
    if csv_path:
        rows = sales.report_rows(store, tz)
        with open(csv_path, "w", newline="", encoding="utf-8") as out:
            sales.write_csv(rows, out)
        click.echo(f"Wrote {len(rows)} sales to {csv_path}")


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in counts.items()) or "none"


@click.command("run-tasks")
@with_appcontext
@click.option("--once", is_flag=True, help="Run every due task, then exit.")
def run_tasks_command(once: bool) -> None:
    """Run the queue of Stripe side effects (capture, cancel, refund, links, ended holds)."""
    lease = current_app.config["TASK_LEASE_SECONDS"]
    while True:
        ran = tasks.run_round(lease)
        if ran or once:
            click.echo(f"Ran {ran} task(s)." if ran else "No task was due.")
        if once:
            return
        time.sleep(current_app.config["WORKER_IDLE_SECONDS"])


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run the background worker: outbox tasks, hold expiry, event polling, sandbox deliveries."""
    done = worker.run(
        current_app._get_current_object(),
        started=lambda: click.echo(f"Worker started (pid {os.getpid()}); Ctrl-C stops it."),
    )
    click.echo(
        f"Worker stopped after {done} jobs (tasks run, sessions expired, events delivered)."
    )


@click.command("poll-events")
@with_appcontext
@click.option("--once", is_flag=True, help="Poll once, then exit.")
def poll_events_command(once: bool) -> None:
    """Poll Stripe's /v1/events and apply new ones (as the worker does with EVENT_SOURCE poll)."""
    gateway = payments.gateway()
    if once:
        try:
            tally = events.poll_once(gateway)
        except payments.PaymentsError as e:
            raise click.ClickException(events.refusal(e)) from None
        click.echo(f"Events: {tally}.")
        return
    # The worker's own job, lease and all: started beside a worker, one of the two polls.
    poller = events.Poller(float(current_app.config["POLL_SECONDS"]), lambda: gateway)
    failures = 0
    while True:
        try:
            applied = poller.step()
        except payments.Transient as e:
            db.session.rollback()
            failures += 1
            delay = min(events.BACKOFF_CAP_SECONDS, 2.0**failures)
            click.echo(f"{events.refusal(e)}; retrying in {delay:.0f} s", err=True)
            time.sleep(delay)
            continue
        except payments.PaymentsError as e:
            raise click.ClickException(events.refusal(e)) from None
        failures = 0
        if applied:
            click.echo(f"Applied {applied} event(s).")
        time.sleep(poller.interval)


@click.command("reconcile")
@with_appcontext
@click.option(
    "--since",
    help="ISO date/time (UTC if no zone) or hours back, e.g. 24h. Default: 8 days, "
    "longer than a card authorization lasts.",
)
def reconcile_command(since: str | None) -> None:
    """Apply paid Checkout Sessions of our links that the app never heard of."""
    try:
        start = parse_since(since)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    try:
        tally = events.reconcile(payments.gateway(), start)
    except payments.PaymentsError as e:
        db.session.rollback()
        raise click.ClickException(f"{events.refusal(e)}; rerun reconcile") from None
    click.echo(f"Reconciled since {start.isoformat()}: {tally}.")


def parse_since(value: str | None) -> datetime:
    """Turn --since (ISO time, or a number of hours like 24h) into an aware UTC time."""
    now = datetime.now(UTC)
    if not value:
        return now - timedelta(days=8)
    if value.endswith("h") and value[:-1].isdigit():
        return now - timedelta(hours=int(value[:-1]))
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO time nor hours like 24h") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command("sync-stripe")
@with_appcontext
def sync_stripe_command() -> None:
    """Create or find the Stripe product, price and payment link of every item."""
    config = current_app.config
    where = "the sandbox" if config["SANDBOX"] else "Stripe"
    # The sandbox's pages are on this laptop: its links follow PUBLIC_URL (a new port, a
    # LAN address). Stripe's own link URLs never change.
    origin = config["PUBLIC_URL"] if config["SANDBOX"] and config["PUBLIC_URL"] else None
    run = stripe_sync.sync_stripe(
        config["STORE_ID"],
        config["LINK_CAPTURE"],
        payments.gateway(),
        echo=click.echo,
        public_url=config["PUBLIC_URL"],
        link_origin=origin,
    )
    results = [r for r in run.results if r.failure is None]
    created = [thing for r in results for thing in r.created]
    click.echo(
        f"Synced {len(results)} items with {where}: {created.count('product')} products, "
        f"{created.count('price')} prices, {created.count('link')} links created; "
        f"{sum(1 for r in results if r.switched)} links switched; "
        f"{sum(1 for r in results if r.retired)} retired; "
        f"{sum(1 for r in results if r.renamed)} products renamed; "
        f"{sum(1 for r in results if r.confirmation)} after-payment pages updated; "
        f"{sum(1 for r in results if not r.changed)} unchanged."
    )
    if run.failed:
        lines = [r.describe() for r in run.failed]
        if run.not_tried:
            lines.append(f"not tried: {', '.join(run.not_tried)} (after the failure above)")
        raise click.ClickException(
            f"{len(run.failed)} item(s) failed with {where}; items synced are kept:\n  "
            + "\n  ".join(lines)
        )


@click.command("sandbox")
@click.option("--port", type=int, default=12111, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False),
    default=None,
    help="The account's SQLite file (default: instance/sandbox-account.sqlite).",
)
@click.option("--public-url", default=None, help="Base URL phones reach the pay pages at.")
def sandbox_command(port: int, host: str, database: str | None, public_url: str | None) -> None:
    """Serve the sandbox alone: one Stripe account for several booths (STRIPE_API_BASE)."""
    # Imported here only: a store with a real key never loads the sandbox otherwise.
    from .sandbox.standalone import create_standalone_app, serve

    path = database or f"{current_app.instance_path}/sandbox-account.sqlite"
    serve(create_standalone_app(path, public_url), host, port, echo=click.echo)


@click.command("check")
@with_appcontext
@click.option(
    "--expect",
    type=click.Choice(["live", "test", "sandbox"]),
    help="The key this booth should run with: live (booth day), test, or sandbox (none).",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(preflight.CHECKS),
    help="Run only this check (and what it needs); repeat for more.",
)
def check_command(expect: str | None, only: tuple[str, ...]) -> None:
    """Check the booth before doors open: one line per check; exit 1 if any failed."""
    setup = preflight.Setup.from_config(current_app.config, current_app.instance_path, expect)
    report = preflight.run(setup, payments.gateway(), only or preflight.CHECKS)
    for result in report.results:
        click.echo(result.line())
    if report.not_run:
        click.echo(f"Not checked until the failures above are fixed: {', '.join(report.not_run)}.")
    if report.failed:
        names = ", ".join(r.name for r in report.failed)
        click.echo(f"{len(report.failed)} of {len(report.results)} checks failed: {names}.")
        raise SystemExit(1)
    click.echo(f"All {len(report.results)} checks passed." if only == () else "Passed.")


def init_app(app: Flask) -> None:
    """Register the commands with the app."""
    for command in (
        init_db_command,
        load_catalog_command,
        report_command,
        run_tasks_command,
        worker_command,
        poll_events_command,
        reconcile_command,
        sync_stripe_command,
        sandbox_command,
        check_command,
    ):
        app.cli.add_command(command)
