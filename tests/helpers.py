"""Small helpers shared by the tests: switching the flag and reading the derived state."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future

import psycopg

FLAG = "account_data_persistence"
WAIT_SECONDS = 60  # upper bound for a session to reach an expected state; never an assertion on speed


def flag_on(conn: psycopg.Connection) -> None:
    """Turn the sync on for every customer (plain SQL, as a person at psql would)."""
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, everyone = true WHERE name = %s", (FLAG,))


def flag_off(conn: psycopg.Connection) -> None:
    """The kill switch (the gates are kept)."""
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))


def memberships(conn: psycopg.Connection) -> set[tuple[int, str]]:
    """{(customer_id, zuora_account_id)} as the billing tables say."""
    rows = conn.execute(
        """
        SELECT m.customer_id, a.zuora_account_id
        FROM public.billing_account_memberships m
        JOIN public.billing_accounts a ON a.id = m.billing_account_id
        """
    ).fetchall()
    return set(rows)


def accounts(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT zuora_account_id FROM public.billing_accounts")}


def insert_customer(conn: psycopg.Connection, account: str | None, email: str = "c@example.com") -> int:
    row = conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id) VALUES (%s, %s) RETURNING id", (email, account)
    ).fetchone()
    assert row is not None
    return row[0]


def run_cli(capsys, db_url: str | None, *args: str) -> tuple[int, str, str]:
    """Run sync-admin in-process through its real entry point: (exit code, stdout, stderr)."""
    from sync_admin.cli import main

    argv = (["--database-url", db_url] if db_url else []) + list(args)
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def audit_events(conn: psycopg.Connection) -> list[tuple]:
    """Every audit row, oldest first: (table_name, operation, actor, reason, before, after)."""
    return conn.execute(
        "SELECT table_name, operation, actor, reason, before, after FROM billing_sync.feature_flag_events ORDER BY id"
    ).fetchall()


# --- concurrent sessions ------------------------------------------------------------------------


def wait_until_blocked(observer: psycopg.Connection, session: psycopg.Connection) -> None:
    """Wait until `session` waits on a lock held by another backend (it is inside its statement)."""
    pid = session.info.backend_pid
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        blocked = observer.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", (pid,)).fetchone()[0]
        if blocked:
            return
        time.sleep(0.005)
    raise AssertionError(f"backend {pid} never waited on a lock")


def session(connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    """A transaction-mode session that cannot hang the suite: long waits fail instead."""
    connection = connect(autocommit=False)
    connection.execute("SET lock_timeout = '30s'")
    connection.commit()
    return connection


def outcome(future: Future) -> object:
    try:
        return future.result(timeout=WAIT_SECONDS)
    except psycopg.Error as exc:
        return exc


def repair(conn: psycopg.Connection) -> int:
    """One pass of the repair service over the whole queue (`sync-admin heal`); the rows still queued."""
    return conn.execute("SELECT still_queued FROM billing_sync.repair_queued(100000)").fetchone()[0]


def queued(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """The repair queue: (customer id, reason), in order."""
    return conn.execute("SELECT customer_id, reason FROM billing_sync.sync_repairs ORDER BY id").fetchall()


# --- transaction ids ----------------------------------------------------------------------------

# The xids between %(since)s and %(upto)s (exclusive; upto is an xid another session assigned after the work) that
# the current transaction assigned, its own and its subtransactions', counted from inside it before it ends: in
# progress, and not listed by its snapshot as another session's (every xid below upto that another session still
# runs is: upto had completed when the snapshot was taken). A difference of the global counter would count every
# other session's xids as well, and on a shared server (TEST_DATABASE_URL, with pytest-xdist's other workers) there
# are many.
OWN_XIDS = """
SELECT count(*)
FROM pg_current_snapshot() AS s, generate_series(%(since)s::bigint + 1, %(upto)s::bigint - 1) AS x
WHERE pg_xact_status(x::text::xid8) = 'in progress'
  AND x::text::xid8 NOT IN (SELECT pg_snapshot_xip(s))
"""


def next_xid(conn: psycopg.Connection) -> int:
    """Assign and return a transaction id in a transaction of its own (conn is autocommit)."""
    return int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])


def own_xids(session: psycopg.Connection, observer: psycopg.Connection, since: int) -> int:
    """How many transaction ids SESSION's open transaction has assigned after the xid SINCE (OBSERVER: another
    session, autocommit)."""
    upto = next_xid(observer)
    return session.execute(OWN_XIDS, {"since": since, "upto": upto}).fetchone()[0]


def xids_used_by(conn: psycopg.Connection, statement: str) -> int:
    """The transaction ids STATEMENT assigns, run in a transaction of its own on CONN (autocommit)."""
    info = conn.info
    with psycopg.connect(**info.get_parameters(), password=info.password, autocommit=True) as observer:
        since = next_xid(conn)
        with conn.transaction():
            conn.execute(statement)
            return own_xids(conn, observer, since)
