"""Run the revisions: on init-db's connection (swagstore.schema.upgrade) or, for `flask db`,
on one of the app's engine. Only the store's tables: the sandbox's bind is not migrated."""

from __future__ import annotations

import logging.config

from alembic import context
from flask import current_app
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

config = context.config
settings = current_app.extensions["migrate"]
target_metadata = settings.db.metadatas[None]


def skip_empty(context: object, revision: object, directives: list) -> None:
    """Write no revision when `flask db migrate` finds no change."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Write a model's own column type (UTCDateTime) as the plain type it stores."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run(connection: Connection) -> None:
    """Run the pending revisions on a connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        process_revision_directives=skip_empty,
        render_item=render_item,
        **settings.configure_args,
    )
    # On init-db's connection a transaction is already open, and this joins it.
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=settings.db.engine.url, target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    run(shared)
else:
    # `flask db …` from a shell: log what it does, but leave the app's loggers alone.
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
    with settings.db.engine.connect() as connection:
        run(connection)
