"""What the alembic revisions call: run the versioned SQL files under sql/, and lock busy tables safely.

A migration runs on deploy against a production database whose `customers` table is busy. A
statement that needs a strong lock on it (CREATE/DROP TRIGGER, a foreign key, ALTER TABLE) waits in
the lock queue behind any long transaction, and every writer that arrives after it waits behind it:
one slow report turns a millisecond of DDL into an outage. So (shared field notes 2, GitLab's
with_lock_retries):

* every statement of a migration runs with `lock_timeout = MIGRATION_LOCK_TIMEOUT` (env.py sets it):
  whatever was overlooked fails the revision instead of queueing for ever;
* the statements that lock a busy table run inside `lock_retries(table, mode=...)`: the lock is
  taken first by `LOCK TABLE` with a short lock_timeout, retried with growing timeouts and sleeps
  between (LOCK_RETRY_TIMINGS), so writers wait at most one short lock_timeout at a time; the
  statements then find the lock held and never wait. Put these steps last in a revision: the lock is
  held until the revision commits.

The kill switch must never wait for a migration longer than one attempt's lock_timeout: a revision that already
holds a lock the kill switch needs (CREATE TRIGGER on feature_flags takes SHARE ROW EXCLUSIVE) must not keep it
while it sleeps between attempts on another table. So when an attempt fails while the revision holds such a lock,
the revision is rolled back (RevisionRestart: its locks go) and migrate.py runs it again after the pause, from the
next attempt of the same schedule.

Online the retry loop is Python (a savepoint per attempt); in offline --sql mode the same loop is a
DO block, so the SQL a DBA runs with psql retries the same way. A DO block with an EXCEPTION clause
is fine here: it runs once per attempt of a migration, not once per row of a customer write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from sync_admin.errors import SyncAdminError
from sync_admin.resources import read_sql

log = logging.getLogger(__name__)

# The lock_timeout of every statement of a migration that is not in a lock_retries block.
MIGRATION_LOCK_TIMEOUT = "5s"

# (lock_timeout in ms, sleep in s after a failed attempt): 40 attempts, about 2 minutes in all,
# starting short so that writers queue behind an attempt for 100 ms at most while the table is
# busy, growing so that a table that is never idle for 100 ms still gets its lock eventually.
LOCK_RETRY_TIMINGS: tuple[tuple[int, float], ...] = (
    *((100, 0.1),) * 10,
    *((200, 0.5),) * 10,
    *((500, 1.0),) * 10,
    *((1000, 3.0),) * 5,
    *((3000, 10.0),) * 5,
)

# The modes LOCK TABLE takes; the one to ask for is the strongest the statements need (field notes 2):
# CREATE TRIGGER and ADD FOREIGN KEY take SHARE ROW EXCLUSIVE, DROP TRIGGER and most ALTER TABLE
# forms ACCESS EXCLUSIVE.
LOCK_MODES = frozenset(
    {
        "ACCESS SHARE",
        "ROW SHARE",
        "ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
        "SHARE",
        "SHARE ROW EXCLUSIVE",
        "EXCLUSIVE",
        "ACCESS EXCLUSIVE",
    }
)

LOCK_NOT_AVAILABLE = "55P03"


class LockRetriesExhausted(SyncAdminError):
    """Every attempt to lock a busy table timed out: the revision is rolled back, nothing changed."""


class RevisionRestart(SyncAdminError):
    """An attempt failed while the revision held a lock that blocks the kill switch: roll the revision back (its
    locks go with it) and run it again, from attempt `next_attempt` of LOCK_RETRY_TIMINGS, after `pause` seconds."""

    def __init__(self, statement: str, next_attempt: int, pause: float) -> None:
        super().__init__(f"{statement}: restarting the revision so as not to hold up the kill switch")
        self.statement = statement
        self.next_attempt = next_attempt
        self.pause = pause


# The attempt of LOCK_RETRY_TIMINGS the next lock_retries block starts at (migrate.py sets it on a restart).
first_attempt = 1

# The tables a kill switch writes (the flag row, its audit row), and the lock modes that block those writes. Only
# once revision 0001 has committed (alembic_version has a row: alembic writes it after each revision): before, the
# flag tables are this transaction's own and no kill switch can reach them.
_KILL_SWITCH_BLOCKED = """
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted
      AND l.relation IN (SELECT pg_catalog.to_regclass(t)
                         FROM unnest(ARRAY['billing_sync.feature_flags', 'billing_sync.feature_flag_events']) AS t)
      AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))
"""
_VERSION_TABLE = "SELECT pg_catalog.to_regclass('public.alembic_version') IS NOT NULL"
_VERSIONS = "SELECT count(*) FROM public.alembic_version"


def _holds_up_the_kill_switch(connection: Connection) -> bool:
    """Whether this revision holds a lock that blocks the kill switch (see _KILL_SWITCH_BLOCKED)."""
    if not connection.exec_driver_sql(_KILL_SWITCH_BLOCKED).scalar_one():
        return False
    if not connection.exec_driver_sql(_VERSION_TABLE).scalar_one():
        return False
    return connection.exec_driver_sql(_VERSIONS).scalar_one() > 0


def run_sql_file(relative: str) -> None:
    """Execute one frozen SQL file (online, or printed in offline --sql mode)."""
    execute(read_sql(relative))


def execute(statement: str) -> None:
    """Execute SQL text as it is, online or printed offline.

    Colons are escaped so that SQLAlchemy does not take `:name` inside PL/pgSQL for a
    bind parameter; the text reaches PostgreSQL unchanged.
    """
    op.execute(text(statement.strip().removesuffix(";").replace(":", r"\:")))


@contextmanager
def lock_retries(*tables: str, mode: str) -> Iterator[None]:
    """Take `mode` on `tables` with short, retried lock timeouts; the block's statements run with it held.

    The lock lasts until the revision commits, so put this block at the end of the revision.
    """
    if mode not in LOCK_MODES:
        raise ValueError(f"not a table lock mode: {mode!r}")
    statement = f"LOCK TABLE {', '.join(tables)} IN {mode} MODE"
    if op.get_context().as_sql:
        execute(offline_lock_block(statement))
    else:
        acquire_with_retries(op.get_bind(), statement)
    yield


def acquire_with_retries(connection: Connection, statement: str) -> int:
    """Run a LOCK TABLE statement until it gets its lock; the number of attempts it took.

    Each attempt runs in a savepoint with SET LOCAL lock_timeout, so a timed-out attempt leaves the
    revision's transaction usable and drops out of the lock queue at once.
    """
    global first_attempt
    previous = connection.exec_driver_sql("SHOW lock_timeout").scalar_one()
    cap = connection.exec_driver_sql(_ATTEMPT_CAP).scalar_one()
    start = min(max(first_attempt, 1), len(LOCK_RETRY_TIMINGS))
    for attempt, (scheduled_ms, sleep_s) in enumerate(LOCK_RETRY_TIMINGS[start - 1 :], start=start):
        timeout_ms = min(scheduled_ms, cap)
        if _try_lock(connection, statement, timeout_ms):
            # The next lock_retries block (of this revision or a later one) starts its schedule afresh.
            first_attempt = 1
            # SET LOCAL in a released savepoint lasts until commit: give the rest of the revision
            # the migration's lock_timeout back.
            connection.execute(text("SELECT set_config('lock_timeout', :value, true)"), {"value": previous})
            return attempt
        log.warning(
            "%s: not granted within %d ms (attempt %d of %d), a transaction holds a conflicting lock; retrying in %g s",
            statement,
            timeout_ms,
            attempt,
            len(LOCK_RETRY_TIMINGS),
            sleep_s,
        )
        if attempt < len(LOCK_RETRY_TIMINGS):
            if _holds_up_the_kill_switch(connection):
                raise RevisionRestart(statement, attempt + 1, sleep_s)
            time.sleep(sleep_s)
    raise LockRetriesExhausted(exhausted_message(statement))


# No attempt waits as long as deadlock_timeout (9/10 of it at most): a LOCK TABLE of several tables takes them one
# after the other, and a customer transaction that read one of the later ones (the flag tables, inside the sync)
# before writing the first (customers) would close a cycle. The deadlock check runs in the backend that has waited
# deadlock_timeout; the attempt, which began to wait first, ends before it, so that backend is never the
# customer's: the attempt gives up, the customer write goes on.
_ATTEMPT_CAP = (
    "SELECT greatest(50, s.setting::integer * 9 / 10) FROM pg_catalog.pg_settings s WHERE s.name = 'deadlock_timeout'"
)


def _try_lock(connection: Connection, statement: str, timeout_ms: int) -> bool:
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{timeout_ms}ms'")
            connection.exec_driver_sql(statement)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return False
        raise
    return True


def exhausted_message(statement: str) -> str:
    seconds = sum(timeout / 1000 + sleep for timeout, sleep in LOCK_RETRY_TIMINGS)
    return (
        f"{statement}: not granted in {len(LOCK_RETRY_TIMINGS)} attempts over {seconds:.0f} s; the revision was "
        "rolled back and nothing changed. Find the long transaction in pg_stat_activity (pg_blocking_pids), "
        "then run the upgrade again"
    )


def offline_lock_block(statement: str) -> str:
    """The retry loop of acquire_with_retries as a DO block, for the SQL a DBA runs with psql."""
    timeouts = ", ".join(str(timeout) for timeout, _ in LOCK_RETRY_TIMINGS)
    sleeps = ", ".join(f"{sleep:g}" for _, sleep in LOCK_RETRY_TIMINGS)
    return f"""
-- Lock retries (GitLab's with_lock_retries): {statement}
-- with a short lock_timeout, retried with backoff, so that writers never queue behind it for long.
-- The statements after it find the lock held; it is held until this revision's COMMIT.
DO $lock_retries$
DECLARE
    timeouts integer[] := ARRAY[{timeouts}];
    sleeps double precision[] := ARRAY[{sleeps}];
    previous text := pg_catalog.current_setting('lock_timeout');
    attempts integer := pg_catalog.array_length(timeouts, 1);
    -- never as long as deadlock_timeout (see sync_admin/migration_ops.py, _ATTEMPT_CAP)
    cap integer := ({_ATTEMPT_CAP});
    committed bigint;
BEGIN
    FOR attempt IN 1 .. attempts LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', least(timeouts[attempt], cap) || 'ms', true);
            {statement};
            PERFORM pg_catalog.set_config('lock_timeout', previous, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE '%: not granted within % ms (attempt % of %); retrying in % s',
                '{statement}', least(timeouts[attempt], cap), attempt, attempts, sleeps[attempt];
        END;
        IF attempt < attempts THEN
            -- Never sleep holding a lock the kill switch needs: stop instead (run the script again).
            IF ({_KILL_SWITCH_BLOCKED.strip()}) AND ({_VERSION_TABLE}) THEN
                EXECUTE '{_VERSIONS}' INTO committed;
                IF committed > 0 THEN
                    RAISE EXCEPTION '{_sql_string(offline_restart_message(statement))}'
                        USING ERRCODE = 'lock_not_available';
                END IF;
            END IF;
            PERFORM pg_catalog.pg_sleep(sleeps[attempt]);
        END IF;
    END LOOP;
    RAISE EXCEPTION '{_sql_string(exhausted_message(statement))}' USING ERRCODE = 'lock_not_available';
END
$lock_retries$;
"""


def offline_restart_message(statement: str) -> str:
    return (
        f"{statement}: not granted, and this revision holds a lock the kill switch needs: rolled back rather than"
        " hold the kill switch up while retrying; nothing of this revision changed, the revisions before it are"
        " committed. Run the rest: sync-admin db sql <the revision in alembic_version>:head"
    )


def _sql_string(value: str) -> str:
    """The inside of a SQL string literal (for a RAISE format: % doubled too)."""
    return value.replace("'", "''").replace("%", "%%")


def create_index_concurrently(relative: str, index: str) -> None:
    """Build the index of an SQL file (`CREATE INDEX CONCURRENTLY ...`) outside any transaction.

    For indexes on existing big tables: a plain CREATE INDEX blocks every writer for the whole
    build. CONCURRENTLY cannot run in a transaction, so this commits the revision so far (alembic's
    autocommit_block): keep it the revision's only step, or its last. A build that failed leaves an
    INVALID index behind; online it is dropped and rebuilt, offline the script says how.
    The build runs without lock_timeout: its waits (for older transactions to finish) block no
    writer, and a timeout would only leave an invalid index.
    """
    statement = read_sql(relative)
    if "CONCURRENTLY" not in statement.upper():
        raise ValueError(f"{relative}: an index on an existing table is built with CREATE INDEX CONCURRENTLY")
    context = op.get_context()
    with context.autocommit_block():
        if context.as_sql:
            context.impl.static_output(f"-- if a previous build of {index} failed: DROP INDEX CONCURRENTLY {index};")
        else:
            _drop_invalid_index(op.get_bind(), index)
        execute("SET lock_timeout = 0")
        execute(statement)
        execute(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")


def _drop_invalid_index(connection: Connection, index: str) -> None:
    invalid = connection.execute(
        text("SELECT NOT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid = to_regclass(:index)"),
        {"index": index},
    ).scalar_one_or_none()
    if invalid:
        log.warning("%s: left INVALID by a failed build; dropping it to build it again", index)
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY {index}")
