"""Is the schema a command needs installed? One check per revision that brought it, each exiting 3 with the fix."""

from __future__ import annotations

import psycopg

from sync_admin.errors import DatabaseUnavailable


def _exists(conn: psycopg.Connection, lookup: str) -> bool:
    row = conn.execute(f"SELECT {lookup} IS NOT NULL").fetchone()
    return bool(row and row[0])


def require_migrated(conn: psycopg.Connection) -> None:
    """Exit 3 with the fix when the billing_sync schema is not installed."""
    if not _exists(conn, "to_regclass('billing_sync.feature_flags')"):
        raise DatabaseUnavailable("the database is not migrated; run `sync-admin db upgrade` first")


def migrated(conn: psycopg.Connection) -> psycopg.Connection:
    """CONN, a new connection, once require_migrated passed; closed when it did not (or anything else failed)."""
    try:
        require_migrated(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def require_installed(conn: psycopg.Connection) -> None:
    """Exit 3 with the fix when revision 0003 (backfill and drift check) is not installed."""
    if not _exists(conn, "to_regclass('billing_sync.backfill_runs')"):
        raise DatabaseUnavailable(
            "the database predates the backfill and drift check (revision 0003); run `sync-admin db upgrade` first"
        )


def require_events(conn: psycopg.Connection) -> None:
    """Exit 3 with the fix when the database predates the events table (revision 0004)."""
    if not _exists(conn, "to_regclass('billing_sync.sync_events')"):
        raise DatabaseUnavailable("billing_sync.sync_events is not installed; run `sync-admin db upgrade` first")


def require_repair_queue(conn: psycopg.Connection) -> None:
    """Exit 3 with the fix when the repair queue (revision 0007) is not installed."""
    if not _exists(conn, "to_regprocedure('billing_sync.repair_queued(integer,bigint)')"):
        raise DatabaseUnavailable(
            "the repair queue is not installed (below revision 0007); run `sync-admin db upgrade`"
        )
