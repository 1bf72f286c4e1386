"""Flask commands for the booth: `flask --app swagstore <command>`."""

from __future__ import annotations

import io

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import catalog, sales
from .models import Store, db


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the tables and this booth's store row (harmless to run again)."""
    init_db()
    click.echo(f"Database ready: {db.engine.url.render_as_string(hide_password=True)}")


def init_db() -> None:
    """Create any missing tables and the configured store."""
    db.create_all()
    store = current_app.config["STORE_ID"]
    if db.session.get(Store, store) is None:
        db.session.add(Store(id=store, name=store))
    db.session.commit()


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
    click.echo(
        f"Loaded {len(items)} items from {path}: {len(result.added)} new, "
        f"{len(result.updated)} updated, {len(result.restocked)} stock reset."
    )


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
    store = current_app.config["STORE_ID"]
    if csv_path == "-":
        out = io.StringIO()
        sales.write_csv(sales.report_rows(store), out)
        click.echo(out.getvalue(), nl=False)
        return
    totals = sales.totals(store)
    click.echo(f"Store {store}: units sold per item")
    for sku, units in totals.per_item:
        click.echo(f"  {sku:<24} {units:>6}")
    takings = ", ".join(
        f"{amount / 100:.2f} {cur.upper()}" for cur, amount in totals.takings.items()
    )
    click.echo(f"Takings: {takings or 'none'}")
    click.echo("Units by kind: " + _pairs(totals.by_kind))
    click.echo("Sales by status: " + _pairs(totals.by_status))
    if csv_path:
        rows = sales.report_rows(store)
        with open(csv_path, "w", newline="", encoding="utf-8") as out:
            sales.write_csv(rows, out)
        click.echo(f"Wrote {len(rows)} sales to {csv_path}")


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in counts.items()) or "none"


def init_app(app: Flask) -> None:
    """Register the commands with the app."""
    for command in (init_db_command, load_catalog_command, report_command):
        app.cli.add_command(command)
