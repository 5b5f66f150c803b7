"""Alembic environment: runs migrations on the connection artsearch hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - artsearch always passes its own connection
    raise RuntimeError("run migrations through artsearch.index.store.Store.upgrade()")

# render_as_batch: SQLite cannot ALTER most things, so changes are done by table copy.
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
