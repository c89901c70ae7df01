"""`sync-admin backfill`: bring every customer in the rollout to the sync's derived state, in batches.

The work is set-based SQL, one batch per short transaction: billing_sync.backfill_batch locks only
the customers of its id range that need a change (FOR SHARE, id order), fixes them, and advances the
run's row in billing_sync.backfill_runs in the same transaction. So a batch is done exactly once or
not at all, and after Ctrl-C, kill -9 or a lost connection the next run resumes after the last id done.

One backfill at a time: the run holds a session advisory lock (pg_try_advisory_lock) for as long as
its connection lives; a second one is refused at once. The server releases the lock when the session
ends, however it ends.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row

from sync_admin import defaults, flags, schema, verify
from sync_admin.db import first_line, mask
from sync_admin.errors import Interrupted, SyncAdminError

# Option defaults (sync_admin/defaults.py says why each).
DEFAULT_BATCH_SIZE = defaults.BACKFILL_BATCH_SIZE
MAX_BATCH_SIZE = defaults.BACKFILL_MAX_BATCH_SIZE
DEFAULT_SLEEP_SECONDS = defaults.BACKFILL_SLEEP_SECONDS
DEFAULT_MAX_BATCH_SECONDS = defaults.BACKFILL_MAX_BATCH_SECONDS
STATEMENT_TIMEOUT_FACTOR = defaults.BACKFILL_STATEMENT_TIMEOUT_FACTOR
# Waiting for a customer row that a live transaction has locked: give up before PostgreSQL's
# deadlock_timeout (1 s), so that in a lock cycle the backfill, not the application, is the one to yield.
LOCK_TIMEOUT_MS = 500
ATTEMPTS_PER_BATCH = 5
RETRY_PAUSE_SECONDS = 0.1
# Settling a connection Ctrl-C left with a query in flight (settle_interrupted): the cancel is repeated this often,
# and the connection closed when the query has not ended after SETTLE_SECONDS.
CANCEL_EVERY_SECONDS = 1.0
CANCEL_TIMEOUT_SECONDS = 5.0  # how long one cancel request may take to connect and be sent (psycopg waits 30 s)
SETTLE_SECONDS = 10.0
DEFAULT_SETTLE_SECONDS = defaults.BACKFILL_SETTLE_SECONDS
# Pauses between fruitless sweeps double.
SWEEP_PAUSE_FIRST = 0.05
SWEEP_PAUSE_MAX = 1.0
# The session advisory lock that keeps a second backfill out, a fixed 64-bit key (the first 8 bytes of
# sha256("billing_sync.backfill")). In pg_locks: locktype 'advisory', classid 2341038657, objid 1885565920.
ADVISORY_LOCK_KEY = -8392059601337224224

RETRYABLE_ERRORS = (
    pg_errors.LockNotAvailable,  # lock_timeout
    pg_errors.QueryCanceled,  # statement_timeout
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
)


class BackfillRunning(SyncAdminError):
    """Another backfill holds the advisory lock."""

    exit_code = 1


@dataclass(frozen=True)
class Run:
    """A row of billing_sync.backfill_runs."""

    id: int
    status: str
    max_id: int | None
    total: int
    last_id: int | None
    scanned: int
    in_rollout: int
    out_of_state: int
    accounts_created: int
    memberships_added: int
    memberships_removed: int
    busy: int
    batches: int
    database_user: str
    actor: str | None
    reason: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def changed(self) -> bool:
        return bool(self.accounts_created or self.memberships_added or self.memberships_removed)

    def as_json(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


RUN_COLUMNS = ", ".join(field.name for field in fields(Run))


@dataclass(frozen=True)
class Options:
    batch_size: int = DEFAULT_BATCH_SIZE
    sleep: float = DEFAULT_SLEEP_SECONDS
    max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS
    restart: bool = False
    actor: str | None = None
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    reason: str | None = None


@dataclass(frozen=True)
class Progress:
    """What the progress display needs after each batch."""

    run: Run
    batch_size: int
    batch_seconds: float
    elapsed_seconds: float
    scanned_this_session: int


@dataclass(frozen=True)
class Result:
    run: Run | None  # None: the flag is off for every customer, no run was started
    resumed: bool
    abandoned: Run | None  # the unfinished run that --restart gave up
    seconds: float
    batch_size: int
    retries: int
    flag: flags.Flag
    # Customers written during the run whose own write queued their repair (in flight, for `sync-admin heal`).
    in_flight: int = 0

    @property
    def changed(self) -> bool:
        return self.run is not None and self.run.changed

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run.as_json() if self.run else None,
            "changed": self.changed,
            "resumed": self.resumed,
            "abandoned_run_id": self.abandoned.id if self.abandoned else None,
            "seconds": round(self.seconds, 3),
            "final_batch_size": self.batch_size,
            "retries": self.retries,
            "flag_off_for_everyone": self.run is None,
            "in_flight_repairs": self.in_flight,
        }


@dataclass(frozen=True)
class Preview:
    """--dry-run: what a backfill would change now (the drift check), and the run it would continue."""

    report: verify.Report
    unfinished: Run | None

    @property
    def accounts_to_create(self) -> int:
        return self.report.item("missing_billing_account").accounts

    @property
    def memberships_to_add(self) -> int:
        return self.report.item("missing_billing_account").rows + self.report.item("missing_membership").rows

    @property
    def memberships_to_remove(self) -> int:
        # This counts memberships whose customer is gone too (possible only with foreign keys bypassed);
        # a backfill walks customers, so it leaves those for a person to delete, as verify reports them.
        return self.report.item("stale_membership").rows + self.report.item("duplicate_or_orphan_membership").rows

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "in_rollout": self.report.in_rollout,
            "accounts_to_create": self.accounts_to_create,
            "memberships_to_add": self.memberships_to_add,
            "memberships_to_remove": self.memberships_to_remove,
            "customers_out_of_state": self.report.drift_customers,
            "unfinished_run": self.unfinished.as_json() if self.unfinished else None,
        }


def preview(conn: psycopg.Connection) -> Preview:
    """What a backfill would do, from one read-only drift check; changes nothing, takes no lock."""
    schema.require_installed(conn)
    report = verify.check(conn, examples=0)
    return Preview(report, _unfinished_run(conn))


def run(conn: psycopg.Connection, options: Options, on_progress: Callable[[Progress], None]) -> Result:
    """Run (or resume) a backfill on CONN, whose session holds the advisory lock until it closes."""
    schema.require_installed(conn)
    # billing_sync.sync_customers works only under READ COMMITTED, whatever the database's default isolation.
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    _lock(conn)
    try:
        return _run_locked(conn, options, on_progress)
    finally:
        # Closing the session releases the lock too; this is for callers that keep the connection. A failure here
        # (a connection an interrupt left unusable) must not replace the exception that tells what happened.
        if not conn.broken:
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _run_locked(conn: psycopg.Connection, options: Options, on_progress: Callable[[Progress], None]) -> Result:
    started = time.monotonic()
    flag = flags.current_flag(conn, flags.ACCOUNT_DATA_PERSISTENCE)
    if not _on_for_anyone(flag):
        return Result(None, False, None, 0.0, options.batch_size, 0, flag)
    current, abandoned, resumed = _open_run(conn, options)
    batches = _Batches(conn, current, options)
    sweep = _Sweep(options.settle_seconds)
    try:
        while batches.run.status == "running":
            before = batches.run
            batches.next()
            on_progress(
                Progress(
                    batches.run,
                    batches.size,
                    batches.last_seconds,
                    time.monotonic() - started,
                    batches.run.scanned - current.scanned,
                )
            )
            if batches.run.status != "running":
                break
            if _sweeping(before):
                sweep.after(before, batches.run, lambda: _still_out_of_state(conn))
            elif options.sleep:
                time.sleep(options.sleep)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {_saved(_as_saved(conn, batches.run))}") from None
    except psycopg.OperationalError as exc:
        raise SyncAdminError(f"lost the database connection ({mask(first_line(exc))}); {_saved(batches.run)}") from None
    in_flight = _queued_customers(conn)
    return Result(
        batches.run, resumed, abandoned, time.monotonic() - started, batches.size, batches.retries, flag, in_flight
    )


def _queued_customers(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(DISTINCT customer_id) FROM billing_sync.sync_repairs").fetchone()
    return int(row[0]) if row else 0


def _sweeping(run: Run) -> bool:
    """The run's id range is done: its batches are the final sweep (billing_sync.backfill_batch v2)."""
    return run.max_id is None or (run.last_id is not None and run.last_id >= run.max_id)


class _Sweep:
    """The final sweep's patience: fruitless sweeps (nothing changed: customers held, or something that keeps
    suppressing a write) pause, doubling, and after settle_seconds of them the run gives up with one line
    (exit 1); its progress stays saved."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self.pause = SWEEP_PAUSE_FIRST
        self.stalled_since: float | None = None

    def after(self, before: Run, run: Run, remaining: Callable[[], int]) -> None:
        changed = (run.accounts_created, run.memberships_added, run.memberships_removed) != (
            before.accounts_created,
            before.memberships_added,
            before.memberships_removed,
        )
        if changed:
            self.pause, self.stalled_since = SWEEP_PAUSE_FIRST, None
            return
        now = time.monotonic()
        self.stalled_since = now if self.stalled_since is None else self.stalled_since
        if now - self.stalled_since >= self.settle_seconds:
            raise SyncAdminError(
                f"run #{run.id}: {remaining()} customers of the rollout are still out of their derived state after"
                f" {self.settle_seconds:g}s of retries: open transactions hold them or their new accounts"
                " (see pg_stat_activity); they are queued for `sync-admin heal`; run `sync-admin backfill` again to"
                " finish the run"
            )
        time.sleep(self.pause)
        self.pause = min(self.pause * 2, SWEEP_PAUSE_MAX)


def _still_out_of_state(conn: psycopg.Connection) -> int:
    """Customers the sweep still has to do: the current cohort's drift and the queued repairs."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT unnest(billing_sync.drifted_customers(2147483647))"
        " UNION SELECT customer_id FROM billing_sync.sync_repairs) c"
    ).fetchone()
    return int(row[0]) if row else 0


def _on_for_anyone(flag: flags.Flag) -> bool:
    return flag.enabled and (flag.everyone or bool(flag.actors) or flag.percentage > 0)


def settle_interrupted(conn: psycopg.Connection) -> None:
    """After Ctrl-C, a connection with no command in flight. psycopg cancels and drains the query it is waiting for,
    but a Ctrl-C that lands between sending a query and waiting for it (or while reading its result) leaves the
    connection ACTIVE: every later command fails with "another command is already in progress", and the backfill
    reported a database error (exit 1) instead of what it saved. So the query is cancelled and its results read
    here; a connection that cannot be settled is closed (the server rolls its transaction back)."""
    if conn.closed or conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
        return
    deadline = time.monotonic() + SETTLE_SECONDS
    try:
        # A cancel that reaches the server before it starts executing the query is lost (a cancel request stops only
        # a running query): sent again every CANCEL_EVERY_SECONDS until the query has ended.
        # A cancel request is a connection of its own: one that takes longer than the pause (a far or busy server)
        # is given up and sent again, within the same deadline.
        while time.monotonic() < deadline:
            with suppress(psycopg.errors.CancellationTimeout):
                conn.cancel_safe(timeout=max(0.1, min(CANCEL_TIMEOUT_SECONDS, deadline - time.monotonic())))
            if _drained_within(conn.pgconn, CANCEL_EVERY_SECONDS):
                return
    except (psycopg.Error, OSError):
        pass
    conn.close()


def _drained_within(pgconn: psycopg.pq.abc.PGconn, seconds: float) -> bool:
    """Whether the query in flight on PGCONN has ended and its results are read, within SECONDS. Nothing here blocks:
    get_result is called only when libpq has a whole result (or the end) buffered, since a result can arrive
    without the ReadyForQuery that ends the query, and a blocking get_result would then wait as long as the server
    (or the network) makes it."""
    deadline = time.monotonic() + seconds
    while True:
        while pgconn.is_busy():
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pgconn.socket], [], [], left)[0]:
                return False
            pgconn.consume_input()
        if pgconn.get_result() is None:
            return True


def _as_saved(conn: psycopg.Connection, run: Run) -> Run:
    """The run as the database has it: Ctrl-C can land after a batch committed and before the loop took its row,
    and the line must say what is saved. The loop's copy when the database cannot say (the connection is gone)."""
    settle_interrupted(conn)
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()  # an interrupted batch's transaction: nothing of it is saved
        cur = conn.cursor(row_factory=class_row(Run))
        saved = cur.execute(f"SELECT {RUN_COLUMNS} FROM billing_sync.backfill_runs WHERE id = %s", (run.id,))
        return saved.fetchone() or run
    except psycopg.Error:
        return run


def _saved(run: Run) -> str:
    where = f"customers up to id {run.last_id}" if run.last_id is not None else "no batch yet"
    return f"run #{run.id} has {where} done and saved; run `sync-admin backfill` to resume"


class _Batches:
    """The batch loop's state: the run row after the last batch, the batch size, retries so far."""

    def __init__(self, conn: psycopg.Connection, run: Run, options: Options) -> None:
        self.conn = conn
        self.run = run
        self.size = options.batch_size
        self.max_batch_seconds = options.max_batch_seconds
        # At least 1 ms: 0 would switch the timeout off.
        self.statement_timeout_ms = max(1, int(options.max_batch_seconds * STATEMENT_TIMEOUT_FACTOR * 1000))
        self.last_seconds = 0.0
        self.retries = 0

    def next(self) -> None:
        """One batch; retried smaller after a lock or statement timeout, a deadlock or a serialization failure."""
        sweeping = _sweeping(self.run)
        for attempt in range(1, ATTEMPTS_PER_BATCH + 1):
            started = time.monotonic()
            try:
                self.run = self._batch(sweeping)
            except RETRYABLE_ERRORS as exc:
                if attempt == ATTEMPTS_PER_BATCH:
                    batch = (
                        "the first batch" if self.run.last_id is None else f"batch after customer id {self.run.last_id}"
                    )
                    raise SyncAdminError(
                        f"{batch} failed {attempt} times, last with {mask(first_line(exc))};"
                        f" {_saved(self.run)} when the load is lower"
                    ) from None
                self.retries += 1
                self.size = max(1, self.size // 2)
                time.sleep(RETRY_PAUSE_SECONDS * attempt)
                continue
            self.last_seconds = time.monotonic() - started
            # A long batch holds its row locks long: make the next one smaller. Not a sweep's: its time is the
            # drift check of the whole cohort, which locks no customer and does not shrink with the size.
            if self.last_seconds > self.max_batch_seconds and not sweeping:
                self.size = max(1, self.size // 2)
            return

    def _batch(self, sweeping: bool) -> Run:
        # A sweep runs without statement_timeout: billing_sync.drifted_customers reads the whole cohort (about
        # 15 s per million customers on 2 cores), holding no customer row while it does, and a timeout would fail
        # it at every size past one (retrying smaller does not make the check shorter).
        statement_timeout = "0" if sweeping else f"{self.statement_timeout_ms}ms"
        with self.conn.transaction():
            self.conn.execute(
                "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                (f"{LOCK_TIMEOUT_MS}ms", statement_timeout),
            )
            cur = self.conn.cursor(row_factory=class_row(Run))
            row = cur.execute(
                f"SELECT {RUN_COLUMNS} FROM billing_sync.backfill_batch(%s, %s)", (self.run.id, self.size)
            ).fetchone()
        assert row is not None
        return row


def _lock(conn: psycopg.Connection) -> None:
    """Take the backfill's session advisory lock, or say who holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
    if row and row[0]:
        return
    holder = conn.execute(
        """
        SELECT a.pid, coalesce(nullif(a.application_name, ''), 'unknown application'), a.usename, a.backend_start
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1
        """,
        ((ADVISORY_LOCK_KEY >> 32) & 0xFFFFFFFF, ADVISORY_LOCK_KEY & 0xFFFFFFFF),
    ).fetchone()
    who = (
        f"session pid {holder[0]} ({holder[1]}, user {holder[2]}, connected {holder[3]:%Y-%m-%d %H:%M:%S %Z})"
        if holder
        else "a session that just ended"
    )
    pid = holder[0] if holder else "PID"
    raise BackfillRunning(
        f"another backfill is running: {who} holds the backfill lock; nothing changed. Wait for it, or stop it"
        f" and run `sync-admin backfill` to resume its run (if its process is gone but the session is not:"
        f" SELECT pg_terminate_backend({pid}))"
    )


def _open_run(conn: psycopg.Connection, options: Options) -> tuple[Run, Run | None, bool]:
    """(the run to work on, the run --restart abandoned, whether it resumes an unfinished run)."""
    cur = conn.cursor(row_factory=class_row(Run))
    with conn.transaction():
        unfinished = cur.execute(
            f"SELECT {RUN_COLUMNS} FROM billing_sync.backfill_runs WHERE status = 'running' FOR UPDATE"
        ).fetchone()
        if unfinished is not None and not options.restart:
            return unfinished, None, True
        abandoned = None
        if unfinished is not None:
            abandoned = cur.execute(
                f"UPDATE billing_sync.backfill_runs SET status = 'abandoned', finished_at = now(), updated_at = now()"
                f" WHERE id = %s RETURNING {RUN_COLUMNS}",
                (unfinished.id,),
            ).fetchone()
        # The run covers the customers that exist now; later ones are synced by the insert trigger.
        new = cur.execute(
            f"INSERT INTO billing_sync.backfill_runs (max_id, total, actor, reason)"
            f" SELECT max(id), count(*), %s, %s FROM public.customers RETURNING {RUN_COLUMNS}",
            (options.actor or flags.default_actor(), options.reason or None),
        ).fetchone()
    assert new is not None
    return new, abandoned, False


def _unfinished_run(conn: psycopg.Connection) -> Run | None:
    cur = conn.cursor(row_factory=class_row(Run))
    return cur.execute(f"SELECT {RUN_COLUMNS} FROM billing_sync.backfill_runs WHERE status = 'running'").fetchone()


def runs(conn: psycopg.Connection, limit: int = 10) -> list[Run]:
    """The newest runs, newest first."""
    cur = conn.cursor(row_factory=class_row(Run))
    return cur.execute(
        f"SELECT {RUN_COLUMNS} FROM billing_sync.backfill_runs ORDER BY id DESC LIMIT %s", (limit,)
    ).fetchall()
