"""The upgrade on a busy customers table: behind a long transaction it neither blocks other writers for
longer than one short lock_timeout, nor gives up without retrying; it completes once the transaction
ends. Online (`sync-admin db upgrade`) and offline (the DBA's script run by psql) alike.

The bounds are behavioural, not performance figures: a writer that queued behind the DDL for the whole
long transaction would wait seconds; one that queues behind a single attempt waits 100 ms at most.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from pgtools import PORTAL_CUSTOMERS, fresh_database, pg_program, server_major
from psycopg import errors

from sync_admin import db, migrate, migration_ops
from sync_admin.migration_ops import LOCK_RETRY_TIMINGS
from sync_admin.release import PRE_RELEASE_REVISION as PRE_RELEASE

FIRST_LOCK_TIMEOUT = LOCK_RETRY_TIMINGS[0][0] / 1000
WRITER_BOUND = 5 * FIRST_LOCK_TIMEOUT  # generous: a writer waits one attempt's lock_timeout at most
STARTUP_SECONDS = 60  # until the upgrade process is up and waiting for its lock (imports, connect)
WRITES = 15


@pytest.fixture
def portal_db(conn, db_url) -> Iterator[str]:
    """A database whose customers table (with rows) exists before the first upgrade."""
    with fresh_database(conn, db_url, PORTAL_CUSTOMERS) as url:
        yield url


@pytest.fixture
def long_transaction(portal_db) -> Iterator[psycopg.Connection]:
    """An open transaction that has updated a customer: it holds ROW EXCLUSIVE on customers, which
    conflicts with the SHARE ROW EXCLUSIVE that CREATE TRIGGER needs."""
    holder = psycopg.connect(portal_db)
    holder.execute("UPDATE public.customers SET name = 'long transaction' WHERE id = 1")
    yield holder
    holder.close()


def upgrade_process(how: str, url: str, tmp_path, major: int) -> subprocess.Popen[str]:
    if how == "online":
        command = [sys.executable, "-m", "sync_admin.cli", "--database-url", url, "db", "upgrade", PRE_RELEASE]
    else:
        script = tmp_path / "upgrade.sql"
        script.write_text(migrate.offline_sql(f"base:{PRE_RELEASE}"), encoding="utf-8")
        command = [pg_program("psql", major), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_the_upgrade_waits_for_customers(observer: psycopg.Connection, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        waiting = observer.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.customers'::regclass AND NOT granted)"
        ).fetchone()
        if waiting and waiting[0]:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError("the upgrade never asked for its lock on customers")


def timed_writes(writer: psycopg.Connection) -> list[float]:
    """Customer writes of the application while the upgrade retries: how long each one took."""
    waits = []
    for n in range(WRITES):
        started = time.monotonic()
        writer.execute("UPDATE public.customers SET name = %s WHERE id = 2", (f"write {n}",))
        writer.execute("INSERT INTO public.customers (email) VALUES (%s)", (f"new{n}@example.com",))
        waits.append(time.monotonic() - started)
        time.sleep(0.05)
    return waits


@pytest.mark.parametrize("how", ["online", "offline"])
def test_behind_a_long_transaction_the_upgrade_retries_without_blocking_writers(
    how, conn, portal_db, long_transaction, tmp_path
):
    major = server_major(conn)
    observer = psycopg.connect(portal_db, autocommit=True)
    writer = psycopg.connect(portal_db, autocommit=True)
    writer.execute("SET lock_timeout = '2s'")  # a writer queued behind the DDL for good fails fast
    try:
        process = upgrade_process(how, portal_db, tmp_path, major)
        wait_until_the_upgrade_waits_for_customers(observer, process)
        waits = timed_writes(writer)
        assert process.poll() is None, process.communicate()  # still retrying: it neither failed nor gave up
        long_transaction.commit()  # the long transaction ends: the next attempt gets the lock
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert max(waits) < WRITER_BOUND, waits
        assert err.count("not granted within") >= 2, err  # it did retry, and said so
        assert migrate.current(portal_db) == PRE_RELEASE
        triggers = observer.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.customers'::regclass AND NOT tgisinternal"
        ).fetchone()
        assert triggers and triggers[0] >= 2
    finally:
        observer.close()
        writer.close()


def test_an_upgrade_that_never_gets_its_lock_gives_up_and_installs_nothing(
    monkeypatch, capsys, portal_db, long_transaction
):
    from helpers import run_cli

    monkeypatch.setattr(migration_ops, "LOCK_RETRY_TIMINGS", ((20, 0.01),) * 3)
    code, _, err = run_cli(capsys, portal_db, "db", "upgrade")
    assert code == 1
    assert err.count("\n") == 4, err  # three retry warnings and the error, one line each
    assert "LOCK TABLE public.customers IN SHARE ROW EXCLUSIVE MODE: not granted in 3 attempts" in err
    assert "the revision was rolled back and nothing changed" in err
    long_transaction.commit()
    with psycopg.connect(portal_db) as check:
        assert check.execute("SELECT to_regnamespace('billing_sync')").fetchone() == (None,)
        assert check.execute("SELECT count(*) FROM public.customers").fetchone() == (40,)
    assert migrate.current(portal_db) is None


@pytest.fixture
def index_file(monkeypatch) -> str:
    """An index on customers, as a revision's SQL file would have it."""
    statement = "CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON public.customers (email)"
    monkeypatch.setattr(migration_ops, "read_sql", lambda relative: statement)
    return "indexes/customers_email_key_v1.sql"


def run_ops(url: str, operation) -> None:
    engine = db.sqlalchemy_engine(url)
    with engine.connect() as connection, Operations.context(MigrationContext.configure(connection)):
        operation()
    engine.dispose()


@pytest.fixture
def failed_index_build(portal_db) -> None:
    """A build that failed before (duplicate emails) left an INVALID index behind."""
    with psycopg.connect(portal_db, autocommit=True) as setup:
        setup.execute("UPDATE public.customers SET email = 'same@example.com' WHERE id IN (3, 4)")
        with pytest.raises(errors.UniqueViolation):
            setup.execute("CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON public.customers (email)")
        setup.execute("UPDATE public.customers SET email = 'fixed@example.com' WHERE id = 4")


def test_an_index_on_a_busy_table_is_built_concurrently_without_blocking_writers(
    portal_db, failed_index_build, long_transaction, index_file
):
    index = "public.customers_email_key"
    build = threading.Thread(
        target=run_ops, args=(portal_db, lambda: migration_ops.create_index_concurrently(index_file, index))
    )
    build.start()
    with psycopg.connect(portal_db, autocommit=True) as writer:
        # CONCURRENTLY waits for the long transaction to end, and blocks no writer meanwhile.
        waits = timed_writes(writer)
        assert build.is_alive()
        long_transaction.commit()
        build.join(timeout=60)
        assert not build.is_alive()
        assert max(waits) < WRITER_BOUND, waits
        valid = writer.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.customers_email_key'::regclass"
        ).fetchone()
        assert valid == (True,)


def test_the_offline_sql_of_a_concurrent_index_build_runs_outside_a_transaction(index_file):
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": buffer, "transactional_ddl": True}
    )
    with Operations.context(context):
        migration_ops.create_index_concurrently(index_file, "public.customers_email_key")
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines == [
        "COMMIT;",
        "-- if a previous build of public.customers_email_key failed:"
        " DROP INDEX CONCURRENTLY public.customers_email_key;",
        "SET lock_timeout = 0;",
        "CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON public.customers (email);",
        f"SET lock_timeout = '{migration_ops.MIGRATION_LOCK_TIMEOUT}';",
        "BEGIN;",
    ]


def test_the_kill_switch_is_never_held_up_by_an_upgrade_retrying_its_lock(conn, portal_db, tmp_path):
    """0005 -> 0006 creates a trigger on feature_flags (SHARE ROW EXCLUSIVE, until the revision commits), then
    retries its lock on customers behind a long transaction. The kill switch (an UPDATE of the flag row) must
    not wait for those retries: the revision rolls back and restarts instead of sleeping with that lock held."""
    migrate.upgrade(portal_db, "0005")
    observer = psycopg.connect(portal_db, autocommit=True)
    operator = psycopg.connect(portal_db, autocommit=True)
    operator.execute("SET lock_timeout = '2s'")  # an operator's kill switch that waits longer fails
    holder = psycopg.connect(portal_db)
    holder.execute("UPDATE public.customers SET name = 'long transaction' WHERE id = 1")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_admin.cli", "--database-url", portal_db, "db", "upgrade", "0006"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_the_upgrade_waits_for_customers(observer, process)
        waits = []
        for enabled in (True, False, True, False, True, False):  # on and off again, over several attempts
            started = time.monotonic()
            operator.execute(
                "UPDATE billing_sync.feature_flags SET enabled = %s WHERE name = 'account_data_persistence'",
                (enabled,),
            )
            waits.append(time.monotonic() - started)
            time.sleep(0.3)
        assert process.poll() is None, process.communicate()  # still retrying
        holder.commit()
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "restarting the revision so as not to hold up the kill switch" in err
        assert max(waits) < 1.5, waits  # one attempt's lock_timeout at most, never the long transaction
        assert migrate.current(portal_db) == "0006"
        assert observer.execute("SELECT enabled FROM billing_sync.feature_flags").fetchone() == (False,)
        mirrored = observer.execute("SELECT to_regnamespace('billing_sync_enabled') IS NOT NULL").fetchone()
        assert mirrored == (False,)  # the mirror follows the kill switch as it was left
    finally:
        holder.close()
        observer.close()
        operator.close()


def test_offline_the_kill_switch_is_never_held_up_either(conn, portal_db, tmp_path):
    """The DBA's script (psql) cannot restart a revision: a revision that holds a lock the kill switch needs stops
    at its first failed attempt instead of retrying with it held, rolled back, and says to run the script again."""
    migrate.upgrade(portal_db, "0005")
    holder = psycopg.connect(portal_db)
    holder.execute("UPDATE public.customers SET name = 'long transaction' WHERE id = 1")
    operator = psycopg.connect(portal_db, autocommit=True)
    operator.execute("SET lock_timeout = '2s'")
    try:
        script = tmp_path / "upgrade.sql"
        script.write_text(migrate.offline_sql("0005:0006"), encoding="utf-8")
        psql = [pg_program("psql", server_major(conn)), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", portal_db]
        done = subprocess.run([*psql, "-f", str(script)], capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        assert "this revision holds a lock the kill switch needs: rolled back" in done.stderr, done.stderr
        assert migrate.current(portal_db) == "0005"  # nothing of 0006 changed
        operator.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = 'account_data_persistence'")
        holder.commit()
        done = subprocess.run([*psql, "-f", str(script)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert migrate.current(portal_db) == "0006"
    finally:
        holder.close()
        operator.close()


def test_a_restarted_revision_does_not_move_a_relative_target(conn, portal_db):
    """`db upgrade +2` from 0004 ends at 0006 even when 0006 restarts (it holds the flag table while it waits
    for customers): the target is resolved once, not counted again from where the restart found the database."""
    migrate.upgrade(portal_db, "0004")
    observer = psycopg.connect(portal_db, autocommit=True)
    holder = psycopg.connect(portal_db)
    holder.execute("UPDATE public.customers SET name = 'long transaction' WHERE id = 1")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_admin.cli", "--database-url", portal_db, "db", "upgrade", "+2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_the_upgrade_waits_for_customers(observer, process)
        time.sleep(1.0)  # a few failed attempts, and restarts, while the transaction holds customers
        holder.commit()
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "restarting the revision" in err
        assert migrate.current(portal_db) == "0006"
    finally:
        holder.close()
        observer.close()
