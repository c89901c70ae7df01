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
