"""`sync-admin heal`: the repair service that makes the sync converge without a person (issue 11).

The sync never waits for another transaction. What it has to leave (a new account another transaction is
creating, a write under REPEATABLE READ, a customer the backfill found held by a live transaction) is queued in
billing_sync.sync_repairs, in the customer write's own transaction. This service repairs the queue with
billing_sync.repair_queued, one short READ COMMITTED transaction per pass:

* the table is the truth: a pass reads the committed queue; the notification on billing_sync_repairs (sent by
  the writes that queue something) only wakes the service early, and it polls anyway, because any session can
  send or suppress notifications;
* a customer still held by a live transaction stays queued and is retried soon (RETRY_FIRST doubling to
  RETRY_MAX), so it is repaired within about RETRY_MAX of that transaction's end;
* a pass never waits for a customer write (SKIP LOCKED, try-locks only), so the service can neither stall
  nor deadlock one; it is idempotent, so running it again, or beside the backfill, is harmless.

One service at a time per database (a session advisory lock, like the backfill's). `--once` drains the queue
and exits: 0 when it is empty, 1 when customers are still held by open transactions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from sync_admin import db, schema
from sync_admin.errors import CheckFailed, DatabaseUnavailable, SyncAdminError

APPLICATION_NAME = "sync-admin heal"
CHANNEL = "billing_sync_repairs"
# The session advisory lock that keeps a second service out: the first 8 bytes of sha256("billing_sync.heal").
ADVISORY_LOCK_KEY = -4402143795008094210
DEFAULT_BATCH_SIZE = 500
DEFAULT_POLL_SECONDS = 5.0
# A customer left because a live transaction holds it: tried again after RETRY_FIRST, doubling to RETRY_MAX.
RETRY_FIRST = 0.05
RETRY_MAX = 0.5
# A pass is a few milliseconds; this stops a runaway one instead of letting it hold its row locks.
STATEMENT_TIMEOUT = "10s"

Emit = Callable[[str], None]


class HealRunning(SyncAdminError):
    """Another heal service holds the advisory lock."""

    exit_code = 1


@dataclass(frozen=True)
class Options:
    batch_size: int = DEFAULT_BATCH_SIZE
    poll: float = DEFAULT_POLL_SECONDS
    first_backoff: float = 0.5
    max_backoff: float = 30.0


@dataclass(frozen=True)
class Pass:
    """What one billing_sync.repair_queued call did."""

    customers: int
    synced: int
    accounts_created: int
    memberships_added: int
    memberships_removed: int
    left: int
    last_id: int | None
    still_queued: int

    @property
    def progressed(self) -> bool:
        return self.customers > self.left


@dataclass(frozen=True)
class Drained:
    """The outcome of draining the queue (`--once`)."""

    repaired: int
    left: int
    still_queued: int
    seconds: float


def repair_pass(conn: psycopg.Connection, batch_size: int, after_id: int = 0) -> Pass:
    """One pass over the oldest queued repairs after queue row AFTER_ID, in its own transaction."""
    with conn.transaction():
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (STATEMENT_TIMEOUT,))
        row = conn.execute(
            "SELECT customers, synced, accounts_created, memberships_added, memberships_removed,"
            " cardinality(left_ids), last_id, still_queued FROM billing_sync.repair_queued(%s, %s)",
            (batch_size, after_id),
        ).fetchone()
    assert row is not None
    return Pass(*row)


class Cursor:
    """Where the next pass starts, and how long to pause: customers held by a long transaction at the head of
    the queue are passed over (the next pass starts after them) so that they never starve the others; once the
    end of the queue is reached the passes start again from its head, after a pause that doubles while
    nothing moves (RETRY_FIRST to RETRY_MAX)."""

    def __init__(self) -> None:
        self.after_id = 0
        self.delay = RETRY_FIRST

    def advance(self, result: Pass) -> float | None:
        """The pause before the next pass: 0 to go on at once, None when the queue is empty (wait to be woken)."""
        if result.customers == 0:
            self.after_id = 0
            if not result.still_queued:
                self.delay = RETRY_FIRST
                return None
            pause, self.delay = self.delay, min(self.delay * 2, RETRY_MAX)
            return pause
        if result.progressed:
            self.delay = RETRY_FIRST
        if result.left and result.last_id is not None:
            self.after_id = result.last_id
        return 0.0 if result.still_queued else None


def drain(conn: psycopg.Connection, batch_size: int, max_seconds: float) -> Drained:
    """Repair until the queue is empty, or until max_seconds pass without it emptying (customers held)."""
    started = time.monotonic()
    repaired = 0
    cursor = Cursor()
    while True:
        result = repair_pass(conn, batch_size, cursor.after_id)
        repaired += result.customers - result.left
        pause = cursor.advance(result)
        if pause is None:
            return Drained(repaired, 0, 0, time.monotonic() - started)
        if time.monotonic() - started >= max_seconds:
            return Drained(repaired, result.left, result.still_queued, time.monotonic() - started)
        time.sleep(pause)


def pass_line(result: Pass) -> str:
    line = (
        f"repaired {result.customers - result.left} customers (accounts +{result.accounts_created},"
        f" memberships +{result.memberships_added} -{result.memberships_removed})"
    )
    if result.left:
        line += f"; {result.left} held by open transactions, retrying"
    return f"{line}; {result.still_queued} queued"


class Healer:
    """The long-running service: a pass whenever woken, retried while customers are held, polled otherwise."""

    def __init__(self, url: str, options: Options, emit: Emit, warn: Emit) -> None:
        self.url = url
        self.options = options
        self.emit = emit
        self.warn = warn
        self.conn: psycopg.Connection | None = None
        self.stopped = threading.Event()
        self.repaired = 0

    def connect(self) -> None:
        conn = _connect(self.url)
        try:
            schema.require_repair_queue(conn)
            _lock(conn)
            conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        """Until stop(); reconnects with backoff when the connection drops, and backs off on any other database
        error (a statement timeout, a deadlock with another repairer): the service never ends by itself."""
        pause = self.options.first_backoff
        while not self.stopped.is_set():
            try:
                self.serve()
            except psycopg.Error as exc:
                if self.conn is None or self.conn.broken or self.conn.closed:
                    self.close()
                    self.reconnect(exc)
                    continue
                self.warn(f"heal: {db.mask(db.first_line(exc))}; trying again in {pause:g}s")
                self.stopped.wait(pause)
                pause = min(pause * 2, self.options.max_backoff)

    def serve(self) -> None:
        assert self.conn is not None
        cursor = Cursor()
        while not self.stopped.is_set():
            result = repair_pass(self.conn, self.options.batch_size, cursor.after_id)
            if result.progressed:
                self.emit(pass_line(result))
                self.repaired += result.customers - result.left
            pause = cursor.advance(result)
            if pause is None:
                self.wait(self.options.poll)
            elif pause:
                self.wait(pause)

    def wait(self, seconds: float) -> None:
        """Sleep up to SECONDS, woken early by a notification (its payload is ignored: untrusted)."""
        assert self.conn is not None
        deadline = time.monotonic() + seconds
        while not self.stopped.is_set() and (remaining := deadline - time.monotonic()) > 0:
            # Short slices, so that stop() is noticed soon; drained before acting (the generator holds the lock).
            woken = list(self.conn.notifies(timeout=min(remaining, 0.25), stop_after=1))
            if woken:
                return

    def reconnect(self, reason: BaseException) -> None:
        delay = self.options.first_backoff
        self.warn(f"heal: connection lost ({db.mask(db.first_line(reason))}); reconnecting in {delay:g}s")
        while not self.stopped.is_set():
            time.sleep(delay)
            try:
                self.connect()
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                delay = min(delay * 2, self.options.max_backoff)
                self.warn(f"heal: reconnect failed ({db.mask(db.first_line(exc))}); next try in {delay:g}s")
                continue
            self.warn("heal: reconnected")
            return


def heal_once(url: str, options: Options, max_seconds: float) -> Drained:
    """`sync-admin heal --once`: drain the queue; CheckFailed (exit 1) when customers are still held."""
    conn = _connect(url)
    try:
        schema.require_repair_queue(conn)
        _lock(conn)
        result = drain(conn, options.batch_size, max_seconds)
    finally:
        conn.close()
    if result.still_queued:
        raise CheckFailed(
            f"heal: {result.still_queued} repairs still queued after {result.seconds:.1f}s: their customers are held"
            " by open transactions (pg_stat_activity shows them); run `sync-admin heal --once` again when they"
            " have ended, or keep `sync-admin heal` running"
        )
    return result


def start_in_background(url: str, options: Options, emit: Emit, warn: Emit) -> Healer:
    """For `watch --heal`: connect now (errors surface at once), then serve in a daemon thread."""
    healer = Healer(url, options, emit, warn)
    healer.connect()
    threading.Thread(target=healer.run, name="sync-admin heal", daemon=True).start()
    return healer


def _connect(url: str) -> psycopg.Connection:
    conn = db.connect_service(url, APPLICATION_NAME)
    # billing_sync.repair_queued works only under READ COMMITTED, whatever the database's default isolation.
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    return conn


def _lock(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
    if row and row[0]:
        return
    raise HealRunning(
        "another `sync-admin heal` (or `watch --heal`) is running on this database; one is enough: nothing started"
    )


def serve(url: str, options: Options, emit: Emit, warn: Emit) -> int:
    """`sync-admin heal`: run until Ctrl-C or SIGTERM; the number of customers repaired. The first connection
    must succeed (exit 3)."""
    from sync_admin.watch import sigterm_stops

    healer = Healer(url, options, emit, warn)
    try:
        with sigterm_stops():
            healer.connect()
            emit(
                f"repairing the queue billing_sync.sync_repairs on {db.mask(url)}: woken by {CHANNEL},"
                f" polled every {options.poll:g}s; Ctrl-C stops"
            )
            healer.run()
    except KeyboardInterrupt:
        pass
    finally:
        healer.close()
    emit(f"stopped; {healer.repaired} customers repaired")
    return healer.repaired
