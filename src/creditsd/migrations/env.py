"""Alembic environment: migrations always run on a connection creditsd hands in."""

from __future__ import annotations

from alembic import context

from creditsd.kit.db import is_sqlite
from creditsd.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=is_sqlite(connection.dialect),
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
