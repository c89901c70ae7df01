"""`sync-admin watch`: print every skip the sync records, as it happens.

The table billing_sync.sync_events is the truth: every skip committed since the last read is read from it
(events.read_new, which misses no late-committing transaction and reads nothing twice), printed one line each,
and sent to Sentry when SENTRY_DSN is set. Notifications on billing_sync_skips (one per statement that
recorded skips) only wake the watch early: their payloads are not trusted (any role can NOTIFY; the
application can suppress its own), and the table is read at least every `poll` seconds anyway. Every
`heartbeat` seconds a line with counts shows the watch is alive (and checks the connection).

When the connection drops (server restart, failover, a terminated backend) the watch reconnects with
exponential backoff and goes on from where it was: the events recorded meanwhile are read like any others.
Ctrl-C or SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

import psycopg

from sync_admin import db, events, release, schema
from sync_admin.errors import DatabaseUnavailable
from sync_admin.events_render import heartbeat_line, skip_line, timestamp
from sync_admin.sentry import SentryReporter

APPLICATION_NAME = "sync-admin watch"


@dataclass(frozen=True)
class Options:
    heartbeat: float = 30.0
    poll: float = 2.0  # read the table at least this often, notification or not
    sentry_per_transaction: int = 100  # a bulk statement's further skips go to Sentry as one event per reason
    first_backoff: float = 0.5
    max_backoff: float = 30.0


Emit = Callable[[str], None]


class Watcher:
    def __init__(self, url: str, options: Options, emit: Emit, warn: Emit, reporter: SentryReporter | None) -> None:
        self.url = url
        self.options = options
        self.emit = emit
        self.warn = warn
        self.reporter = reporter
        # Two connections: the listener only waits for notifications, so none can arrive (and, with an
        # older psycopg, be dropped) while a query runs on it; the reader runs the queries.
        self.listener: psycopg.Connection | None = None
        self.reader: psycopg.Connection | None = None
        self.alive_at: datetime | None = None  # server time when the connection last answered
        self.cursor = events.EventCursor()  # kept across reconnects: it is in the server's terms
        # Events printed by a read that did not finish (the connection dropped part-way): its next try reads them
        # again from the same cursor, and they are not printed twice.
        self.printed_unfinished: set[int] = set()
        self.interval: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.next_beat = 0.0

    # --- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and LISTEN; DatabaseUnavailable (exit 3) when the server or the events table is not there."""
        try:
            self.reader = db.connect_service(self.url, APPLICATION_NAME)
            schema.require_events(self.reader)
            self.listener = db.connect_service(self.url, APPLICATION_NAME)
            self.listener.execute(f"LISTEN {events.CHANNEL}")
            self.alive_at = events.server_now(self.reader)
            if self.cursor.snapshot is None:
                self.read()  # places the cursor: what is committed from now on is printed
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for conn in (self.listener, self.reader):
            if conn is not None:
                conn.close()
        self.listener = self.reader = None

    def reconnect(self, reason: BaseException) -> None:
        self.close()
        delay = self.options.first_backoff
        self.warn(f"connection lost ({db.mask(db.first_line(reason))}); reconnecting in {delay:g}s")
        while True:
            time.sleep(delay)
            try:
                self.connect()
                break
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                delay = min(delay * 2, self.options.max_backoff)
                self.warn(f"reconnect failed ({db.mask(db.first_line(exc))}); next try in {delay:g}s")
        self.warn("reconnected; printing the skips recorded while disconnected")
        self.read()

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        self.next_beat = time.monotonic() + self.options.heartbeat
        while True:
            try:
                self.listen_until_heartbeat()
                self.heartbeat()
            except psycopg.OperationalError as exc:
                self.reconnect(exc)

    def listen_until_heartbeat(self) -> None:
        """Read the table whenever a notification wakes the watch, and at least every `poll` seconds."""
        assert self.listener is not None
        while (remaining := self.next_beat - time.monotonic()) > 0:
            # Drain the generator first: it holds the connection's lock while it yields. The payloads are not
            # read: a notification only says "look now".
            woken = list(self.listener.notifies(timeout=min(remaining, self.options.poll), stop_after=1))
            del woken
            self.read()

    def heartbeat(self) -> None:
        assert self.reader is not None
        now = events.server_now(self.reader)  # also proves the server still answers
        self.alive_at = now
        self.emit(heartbeat_line(now, self.interval, self.total, self.options.heartbeat))
        self.interval = Counter()
        self.next_beat = time.monotonic() + self.options.heartbeat

    def read(self) -> None:
        """Print every skip committed since the last read; to Sentry the first of each transaction, and the rest
        of a bulk statement's as one overflow event per reason."""
        assert self.reader is not None
        sent: Counter[int] = Counter()
        overflow: dict[int, Counter[str]] = {}
        for event in events.read_new(self.reader, self.cursor):
            if event.id in self.printed_unfinished:
                continue
            self.printed_unfinished.add(event.id)
            to_sentry = sent[event.transaction_id] < self.options.sentry_per_transaction
            self.show(event, to_sentry=to_sentry)
            if to_sentry:
                sent[event.transaction_id] += 1
            else:
                overflow.setdefault(event.transaction_id, Counter())[event.reason] += 1
        self.printed_unfinished.clear()
        if self.reporter is not None:
            for transaction_id, reasons in overflow.items():
                self.reporter.report_overflow(transaction_id, reasons)

    def show(self, event: events.SkipEvent, *, to_sentry: bool) -> None:
        # Counted before printed: a Ctrl-C that lands just after the line (a reader may act on it at once) must not
        # leave a printed skip out of the final "stopped; N skips seen".
        self.interval[event.reason] += 1
        self.total[event.reason] += 1
        self.emit(skip_line(event))
        if to_sentry and self.reporter is not None:
            self.reporter.report(event)


def watch(url: str, options: Options, emit: Emit, warn: Emit, reporter: SentryReporter | None) -> int:
    """Run until Ctrl-C or SIGTERM; the number of skips printed. The first connection must succeed (exit 3)."""
    watcher = Watcher(url, options, emit, warn, reporter)
    target = f"; reporting to Sentry at {reporter.target}" if reporter else ""
    try:
        with sigterm_stops():
            watcher.connect()
            emit(
                f"{timestamp(watcher.alive_at or datetime.now().astimezone())} watching channel {events.CHANNEL}"
                f" on {db.mask(url)}: a line per skip, a heartbeat every {options.heartbeat:g}s{target};"
                " Ctrl-C stops"
            )
            done = release.released(watcher.reader) if watcher.reader is not None else None
            if done is not None:
                emit(f"{done.flag} {done.summary}: the sync is always on, its skips are still recorded")
            watcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
        if reporter is not None:
            reporter.close()
    emit(f"stopped; {watcher.total.total()} skips seen")
    return watcher.total.total()


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM (systemd, Kubernetes) stops the watch like Ctrl-C does."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
