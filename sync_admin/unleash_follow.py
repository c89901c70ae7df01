"""`sync-admin unleash sync` (once) and `sync-admin unleash follow` (a long-running service).

The service polls Unleash's client API every `interval` seconds with the ETag (an unchanged flag costs a 304), and
plans against the database at every poll all the same: a gate changed in the database is put back within one
interval. A change is applied in one transaction (sync_admin/unleash_bridge.py).

Unleash unreadable (down, slow, 401, garbage): the database is left as it is, the service says so on stderr and
retries after 2 x interval, doubling up to max_backoff; when Unleash answers again it says so. The database
unreachable: the same, reconnecting. A conflict or something not representable is said when it appears or
changes, and again every `remind` seconds while it stands (and sent to Sentry once). The release of the flag
stops the service (exit 7: there is nothing left to follow; systemd: RestartPreventExitStatus=7). Ctrl-C or
SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from sync_admin import db
from sync_admin.errors import DatabaseUnavailable, SyncAdminError
from sync_admin.unleash import Source
from sync_admin.unleash_alerts import Alerts
from sync_admin.unleash_bridge import FLAG, Outcome, Released, connect, require_not_released, step
from sync_admin.unleash_client import DEFAULT_TIMEOUT, UnleashUnreadable
from sync_admin.unleash_config import UnleashConfig

Emit = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    interval: float = 5.0
    max_backoff: float = 60.0
    timeout: float = DEFAULT_TIMEOUT
    remind: float = 300.0
    dry_run: bool = False


def sync_once(config: UnleashConfig, url: str, *, dry_run: bool, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
    """`unleash sync`: one reading, one plan, applied unless dry_run. The database is read first: after the release
    there is nothing to ask Unleash. Failures (conflict, not applicable) go to Sentry when it is configured; the
    caller prints the outcome and raises plan.failure()."""
    alerts = Alerts(config.name, FLAG, config.secrets())
    try:
        conn = connect(url)
        try:
            require_not_released(conn)
            source = Source(config, FLAG, timeout=timeout)
            try:
                outcome = step(conn, source, source.read(), dry_run=dry_run)
            except UnleashUnreadable as exc:
                alerts.problem("unreadable", str(exc), level="warning")
                raise
            failure = outcome.plan.failure()
            if failure is not None:
                alerts.problem(_kind(failure), str(failure))
            return outcome
        finally:
            conn.close()
    finally:
        alerts.close()


def _kind(failure: SyncAdminError) -> str:
    return "conflict" if failure.exit_code == 6 else "not-applied"


class Follower:
    def __init__(self, config: UnleashConfig, url: str, options: Options, emit: Emit, warn: Emit) -> None:
        self.config = config
        self.url = url
        self.options = options
        self.emit = emit
        self.warn = warn
        self.source = Source(config, FLAG, timeout=options.timeout)
        self.alerts = Alerts(config.name, FLAG, config.secrets())
        self.conn: psycopg.Connection | None = None
        self.stopped = threading.Event()
        self.failures = 0  # consecutive polls that could not read Unleash or reach the database
        self.standing: str | None = None  # the conflict or problem said last
        self.said_at = 0.0
        self.shown: list[str] = []  # the last change printed (a dry run would print the same one at every poll)
        self.applied = 0

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.alerts.close()

    def run(self) -> None:
        """Until stop(); raises Released when the flag is released (nothing left to follow). Polls start at a
        fixed rate (every `interval` from the previous start, not after it): a change waits at most one interval."""
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except UnleashUnreadable as exc:
                self.trouble("unreadable", f"Unleash cannot be read: {exc}")
                continue
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                self.drop_connection()
                self.trouble("database", f"the database cannot be reached: {db.mask(db.first_line(exc))}")
                continue
            except psycopg.Error as exc:  # a lock timeout, a statement refused: the next poll plans afresh
                self.trouble("database", f"the database refused the change: {db.mask(db.first_line(exc))}")
                continue
            self.stopped.wait(max(0.0, started + self.options.interval - time.monotonic()))

    def poll(self) -> None:
        if self.conn is None:
            self.conn = connect(self.url)
        require_not_released(self.conn)
        reading = self.source.read()
        outcome = step(self.conn, self.source, reading, dry_run=self.options.dry_run)
        self.recovered()
        lines = outcome.lines() if outcome.plan.changes() else []
        if lines and (outcome.applied or lines != self.shown):
            for line in lines:
                self.emit(f"{_now()} {line}")
        self.shown = lines
        self.applied += int(outcome.applied)
        self.report(outcome)

    def report(self, outcome: Outcome) -> None:
        """A conflict or what is not applied: said when it appears or changes, then every `remind` seconds."""
        failure = outcome.plan.failure()
        if failure is None:
            if self.standing is not None:
                self.emit(f"{_now()} resolved: the database follows Unleash ({outcome.plan.unleash})")
                self.alerts.clear("conflict")
                self.alerts.clear("not-applied")
            self.standing = None
            return
        message = str(failure)
        now = time.monotonic()
        if message != self.standing or now - self.said_at >= self.options.remind:
            self.warn(f"{_now()} {_kind(failure)} (exit {failure.exit_code} for `unleash sync`): {message}")
            self.said_at = now
        self.standing = message
        self.alerts.problem(_kind(failure), message)

    def trouble(self, kind: str, message: str) -> None:
        """Unleash or the database failed: nothing was changed; wait 2 x interval, doubling up to max_backoff."""
        self.failures += 1
        delay = min(self.options.interval * 2**self.failures, self.options.max_backoff)
        self.warn(f"{_now()} {message}; the database keeps its state; try {self.failures + 1} in {delay:g}s")
        self.alerts.problem(kind, message, level="warning")
        self.stopped.wait(delay)

    def recovered(self) -> None:
        if self.failures:
            self.warn(f"{_now()} Unleash and the database answer again (after {self.failures} failed tries)")
            self.alerts.clear("unreadable")
            self.alerts.clear("database")
        self.failures = 0

    def drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


def follow(config: UnleashConfig, url: str, options: Options, emit: Emit, warn: Emit) -> int:
    """Run until Ctrl-C or SIGTERM; the number of changes applied. The first database connection must succeed
    (exit 3); Unleash may be down at the start (the service waits for it). Released (exit 7) ends it."""
    from sync_admin.watch import sigterm_stops

    follower = Follower(config, url, options, emit, warn)
    try:
        with sigterm_stops():
            follower.conn = connect(url)
            sentry = f"; reporting to Sentry at {follower.alerts.target}" if follower.alerts.target else ""
            dry = " (dry run: nothing is changed)" if options.dry_run else ""
            emit(
                f"{_now()} following {FLAG} in Unleash {config.environment} at {config.origin} on {db.mask(url)}:"
                f" polled every {options.interval:g}s{sentry}{dry}; Ctrl-C stops"
            )
            follower.run()
    except KeyboardInterrupt:
        pass
    except Released:
        emit(f"{_now()} stopped: the flag was released")
        raise
    finally:
        follower.close()
    emit(f"{_now()} stopped; {follower.applied} changes applied")
    return follower.applied


def _now() -> str:
    return datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")


def resolve_conflict(
    config: UnleashConfig, url: str, *, accept: bool, actor: str, reason: str | None, timeout: float = DEFAULT_TIMEOUT
) -> list[str]:
    """`unleash resolve`: a person ends a conflict (sync_admin/unleash_bridge.resolve)."""
    from sync_admin.unleash_bridge import resolve

    conn = connect(url)
    try:
        return resolve(conn, Source(config, FLAG, timeout=timeout), accept=accept, actor=actor, reason=reason)
    finally:
        conn.close()
