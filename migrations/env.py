"""Alembic environment: connect to the database sync-admin would use, online or offline."""

from alembic import context
from sqlalchemy import create_engine, pool

from sync_admin import db

config = context.config


def database_url() -> str:
    """sync-admin passes its URL as an attribute; plain `alembic` uses DATABASE_URL or the embedded server."""
    url = config.attributes.get("database_url") or db.resolve_url(None)
    if url is None:
        from sync_admin import server

        url = server.start()
    return db.sqlalchemy_url(url)


def run_migrations_offline() -> None:
    """Print the SQL for a DBA to review and run: no database is contacted."""
    context.configure(
        url=config.attributes.get("database_url") or "postgresql+psycopg://",
        dialect_name="postgresql",
        literal_binds=True,
        # "named" keeps % as it is; the driver's pyformat style would print %% into the SQL.
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    engine = create_engine(
        database_url(), poolclass=pool.NullPool, connect_args={"application_name": "alembic"}
    )
    with engine.connect() as connection:
        _run_with(connection)
    engine.dispose()


def _run_with(connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
