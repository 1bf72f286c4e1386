"""Flask commands for the booth: `flask --app swagstore <command>`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import catalog
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


def init_app(app: Flask) -> None:
    """Register the commands with the app."""
    for command in (init_db_command, load_catalog_command):
        app.cli.add_command(command)
