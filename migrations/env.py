"""Alembic's entry point: migrations run on the connection, and in the transaction, that
`migrations.upgrade` hands over, never on a connection of their own."""

from __future__ import annotations

from alembic import context

from connectors.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the store's migrations run through `nearmiss migrate`, which passes "
                       "the connection; there is no offline (--sql) mode")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():  # the caller's transaction: all revisions or none
    context.run_migrations()
