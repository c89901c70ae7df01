"""Alembic environment: connect to the database sync-admin would use, online or offline.

Every statement of a migration runs with lock_timeout = MIGRATION_LOCK_TIMEOUT (sync_admin.migration_ops
says why): online it is set on the session before the first revision, offline it is the first line
of the script a DBA runs with psql.

sync_admin.models describes the tables the migrations build; it is the target of autogenerate's
comparison (`alembic check`, pytest-alembic's model test), limited to the schemas and tables that
are ours.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine

from sync_admin import db, models
from sync_admin.migration_ops import MIGRATION_LOCK_TIMEOUT

config = context.config

# None is the default schema (public) as autogenerate names it.
OUR_SCHEMAS = {None, "billing_sync"}


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Compare our schemas only, without alembic's own bookkeeping table."""
    if type_ == "schema":
        return name in OUR_SCHEMAS
    if type_ == "table":
        return not (name == "alembic_version" and parent_names.get("schema_name") is None)
    return True


COMPARISON: dict[str, Any] = {
    "target_metadata": models.metadata,
    "include_schemas": True,
    "include_name": include_name,
    "compare_type": True,
    "compare_server_default": True,
}


def database_url() -> str:
    """sync-admin passes its URL as an attribute; plain `alembic` uses DATABASE_URL or the embedded server."""
    url = config.attributes.get("database_url") or db.resolve_url(None)
    if url is None:
        from sync_admin import server

        url = server.start()
    return url


def run_migrations_offline() -> None:
    """Print the SQL for a DBA to review and run: no database is contacted."""
    context.configure(
        url=config.attributes.get("database_url") or "postgresql+psycopg://",
        dialect_name="postgresql",
        literal_binds=True,
        # "named" keeps % as it is; the driver's pyformat style would print %% into the SQL.
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        **COMPARISON,
    )
    # psql runs the script in one session: this holds for every statement after it.
    context.execute(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """sync-admin and plain alembic bring a URL; pytest-alembic brings an engine (or a connection)."""
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _run_with(given)
        return
    engine = given if isinstance(given, Engine) else db.sqlalchemy_engine(database_url(), application_name="alembic")
    with engine.connect() as connection:
        _run_with(connection)
    if engine is not given:
        engine.dispose()


def _run_with(connection: Connection) -> None:
    _set_lock_timeout(connection)
    context.configure(connection=connection, transaction_per_migration=True, **COMPARISON)
    with context.begin_transaction():
        context.run_migrations()


def _set_lock_timeout(connection: Connection) -> None:
    # Session-wide, so that it outlives the transaction of each revision. Committed at once when we
    # opened the transaction: alembic runs one transaction per revision only on an idle connection.
    idle = not connection.in_transaction()
    connection.exec_driver_sql(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")
    for name, value in release_settings().items():
        connection.exec_driver_sql(
            "SELECT pg_catalog.set_config(%(name)s, %(value)s, false)", {"name": name, "value": value}
        )
    if idle:
        connection.commit()


# What the release revision (0013) reads from the session: sync-admin passes them as the attribute
# "release_settings"; plain alembic takes them as -x options (alembic -x release_override='why' upgrade head).
RELEASE_SETTINGS = {
    "release_override": "billing_sync.release_override",
    "release_min_hours": "billing_sync.release_min_hours",
    "actor": "billing_sync.actor",
    "reason": "billing_sync.reason",
}


def release_settings() -> dict[str, str]:
    given = {**context.get_x_argument(as_dictionary=True), **config.attributes.get("release_settings", {})}
    return {RELEASE_SETTINGS[key]: str(value) for key, value in given.items() if key in RELEASE_SETTINGS and value}


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
