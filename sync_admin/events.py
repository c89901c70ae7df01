"""billing_sync.sync_events: the customer writes the sync skipped, recorded by the trigger (issue 5).

Reading them (`sync-admin errors`, `sync-admin watch`), following the notifications that point at
them, and pruning old ones (`sync-admin events prune`). The rows are written only by the sync
functions (sql/functions/sync_customers_inserted_v1.sql and sync_customer_updated_v1.sql since revision
0006); the reason codes are their contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

# The channel the sync functions send on, once per statement that recorded skips.
CHANNEL = "billing_sync_skips"

# Stable reason codes: alerts and dashboards key on them (docs/runbook.md, "Monitoring").
REASONS = {
    "not_an_account": "the value is not blank but is not an account (normalisation rule); treated as no account",
    "account_contended": "another transaction was creating the same new account; left to the next write or backfill",
    "account_unresolved": "the billing account could be neither found nor created",
    "membership_unwritten": "the membership insert wrote nothing (a rule or trigger suppressed it)",
}

VALUE_CHARACTERS = 200  # the trigger keeps this many characters of the offending value
PRUNE_BATCH = 10_000  # rows per DELETE: each batch is a short transaction, vacuum keeps up
PAGE = 1_000  # events fetched per query when following a notification

_COLUMNS = """id, occurred_at, customer_id, operation, reason, value, value_length, transaction_id,
              database_user, application_name"""


@dataclass(frozen=True)
class SkipEvent:
    id: int
    occurred_at: datetime
    customer_id: int
    operation: str
    reason: str
    value: str | None
    value_length: int | None
    transaction_id: int
    database_user: str
    application_name: str | None

    @property
    def truncated(self) -> bool:
        return (self.value_length or 0) > len(self.value or "")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "occurred_at": self.occurred_at.isoformat(), "truncated": self.truncated}


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    events: int
    customers: int
    first_seen: datetime
    last_seen: datetime
    examples: tuple[SkipEvent, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "description": REASONS.get(self.reason, "unknown reason code"),
            "events": self.events,
            "customers": self.customers,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "examples": [event.as_json() for event in self.examples],
        }


@dataclass(frozen=True)
class Summary:
    since: datetime
    until: datetime
    reasons: tuple[ReasonCount, ...]

    @property
    def events(self) -> int:
        return sum(reason.events for reason in self.reasons)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "events": self.events,
            "reasons": [reason.as_json() for reason in self.reasons],
        }


@dataclass(frozen=True)
class Pointer:
    """What a notification points at: the events of one transaction from one id on."""

    transaction_id: int
    first_event_id: int


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    deleted: int
    dry_run: bool


def summary(conn: psycopg.Connection, since: timedelta, examples: int) -> Summary:
    """Counts per reason over the last `since`, most frequent first, each with its latest `examples` events."""
    with conn.transaction():
        # One snapshot and one "now": the counts and the examples describe the same events.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        start, until = conn.execute("SELECT now() - %s, now()", (since,)).fetchone()
        rows = conn.execute(
            """
            SELECT reason, count(*), count(DISTINCT customer_id), min(occurred_at), max(occurred_at)
            FROM billing_sync.sync_events
            WHERE occurred_at >= %s
            GROUP BY reason
            ORDER BY count(*) DESC, reason
            """,
            (start,),
        ).fetchall()
        reasons = tuple(
            ReasonCount(reason, events, customers, first, last, _latest(conn, reason, start, examples))
            for reason, events, customers, first, last in rows
        )
    return Summary(start, until, reasons)


def _latest(conn: psycopg.Connection, reason: str, start: datetime, limit: int) -> tuple[SkipEvent, ...]:
    cur = conn.cursor(row_factory=class_row(SkipEvent))
    query = f"""
        SELECT {_COLUMNS} FROM billing_sync.sync_events
        WHERE reason = %s AND occurred_at >= %s
        ORDER BY occurred_at DESC, id DESC
        LIMIT %s
    """
    return tuple(cur.execute(query, (reason, start, limit)).fetchall())


BIGINT_MAX = 2**63 - 1


def parse_pointer(payload: str) -> Pointer | None:
    """The pointer in a notification's payload; None for a payload this version does not understand.

    Any role can NOTIFY the channel, so the payload is untrusted: anything but two integers in bigint range
    (a float, Infinity, NaN, a huge number, another shape) is not a pointer."""
    try:
        data = json.loads(payload)
        numbers = (data["transaction_id"], data["first_event_id"])
    except (ValueError, TypeError, KeyError):
        return None
    if not all(type(n) is int and 0 <= n <= BIGINT_MAX for n in numbers):
        return None
    return Pointer(numbers[0], numbers[1])


@dataclass
class EventCursor:
    """Where a reader of billing_sync.sync_events is, in the server's own terms, so that each event is read once,
    whether or not a notification announced it (the application can suppress its notifications; any role can
    send fake ones): the table is the truth.

    Event ids come from a sequence, in the order rows are written, not in the order their transactions commit,
    so "the ids after the last one seen" would miss a transaction that committed late. Each read takes one
    snapshot and reads the events of the transactions that are visible in it but were not in the snapshot of the
    read before (transaction_id >= that snapshot's xmin, and not visible in it): every committed transaction is
    read exactly once, whatever its ids, however long it stayed open.
    """

    snapshot: str | None = None  # pg_snapshot of the last read, as text; None before the first read


_SNAPSHOT = "SELECT pg_catalog.pg_current_snapshot()::text"


def read_new(conn: psycopg.Connection, cursor: EventCursor) -> Iterator[SkipEvent]:
    """The events committed since the last read of CURSOR, by id, a page at a time; advances CURSOR once all
    are read (a reader interrupted part-way reads them again).

    The first read only places the cursor (now): it yields nothing. CONN must be in autocommit mode."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute(_SNAPSHOT).fetchone()
        assert row is not None
        if cursor.snapshot is not None:
            yield from _pages(conn, cursor.snapshot)
        cursor.snapshot = str(row[0])


def _pages(conn: psycopg.Connection, previous: str) -> Iterator[SkipEvent]:
    cur = conn.cursor(row_factory=class_row(SkipEvent))
    last = 0
    while True:
        page = cur.execute(
            f"""
            SELECT {_COLUMNS} FROM billing_sync.sync_events
            WHERE transaction_id >= pg_catalog.pg_snapshot_xmin(%(previous)s::pg_catalog.pg_snapshot)::text::bigint
              AND NOT pg_catalog.pg_visible_in_snapshot(
                      transaction_id::text::pg_catalog.xid8, %(previous)s::pg_catalog.pg_snapshot)
              AND id > %(last)s
            ORDER BY id
            LIMIT %(page)s
            """,
            {"previous": previous, "last": last, "page": PAGE},
        ).fetchall()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1].id


def pointed(conn: psycopg.Connection, pointer: Pointer, after_id: int = 0) -> Iterator[SkipEvent]:
    """The events a notification points at (and any later ones of its transaction), past `after_id`, by id.

    Fetched a page at a time by id, so a statement that skipped 100,000 rows never sits in memory at once.
    """
    cur = conn.cursor(row_factory=class_row(SkipEvent))
    last = max(after_id, pointer.first_event_id - 1)
    while True:
        page = cur.execute(
            f"""
            SELECT {_COLUMNS} FROM billing_sync.sync_events
            WHERE transaction_id = %s AND id > %s
            ORDER BY id
            LIMIT %s
            """,
            (pointer.transaction_id, last, PAGE),
        ).fetchall()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1].id


def server_now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def prune(conn: psycopg.Connection, older_than: timedelta, *, dry_run: bool = False) -> PruneResult:
    """Delete the events recorded before now - older_than, in batches of short transactions.

    The cutoff is fixed once, so events recorded while pruning are never touched. Batches keep each
    transaction (and its locks and WAL burst) small on a table that can hold millions of rows.
    """
    cutoff = conn.execute("SELECT now() - %s", (older_than,)).fetchone()[0]
    if dry_run:
        count = conn.execute("SELECT count(*) FROM billing_sync.sync_events WHERE occurred_at < %s", (cutoff,))
        return PruneResult(cutoff, count.fetchone()[0], True)
    deleted = 0
    while True:
        with conn.transaction():
            batch = conn.execute(
                """
                DELETE FROM billing_sync.sync_events e
                WHERE e.id IN (
                    SELECT id FROM billing_sync.sync_events
                    WHERE occurred_at < %s
                    ORDER BY occurred_at
                    LIMIT %s
                )
                """,
                (cutoff, PRUNE_BATCH),
            ).rowcount
        deleted += batch
        if batch < PRUNE_BATCH:
            return PruneResult(cutoff, deleted, False)
