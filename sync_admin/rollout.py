"""`sync-admin rollout check`: the rollout plan's release gates as a checklist, each with its evidence.

1. the flag is on for everyone (kill switch on, everyone gate on);
2. it has been on for everyone for at least --min-hours, with no kill-switch or gate-off event since
   (from the audit log, billing_sync.feature_flag_events);
3. zero drift (the `sync-admin verify` report);
4. no sync skips: none recorded in billing_sync.sync_events since the everyone period began, and no
   customer in the rollout whose value is not blank and not an account. An account_contended skip whose
   customer the repair has since done (nothing left in billing_sync.sync_repairs for it) does not count:
   contention is the sync's normal way of never waiting, and the repair (`sync-admin heal`) closes it.
Ready to release the flag only when all four pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sync_admin import defaults, flags, schema, verify

DEFAULT_MIN_HOURS = defaults.ROLLOUT_MIN_HOURS
EXAMPLES = 5


@dataclass(frozen=True)
class Line:
    name: str
    passed: bool
    evidence: str


@dataclass(frozen=True)
class Checklist:
    flag: str
    min_hours: float
    checked_at: datetime
    lines: tuple[Line, ...]
    report: verify.Report

    @property
    def passed(self) -> bool:
        return all(line.passed for line in self.lines)

    @property
    def failed(self) -> int:
        return sum(not line.passed for line in self.lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "min_hours": self.min_hours,
            "checked_at": self.checked_at.isoformat(),
            "ready": self.passed,
            "checks": [line.__dict__ for line in self.lines],
        }


@dataclass(frozen=True)
class Period:
    """The current stretch of on-for-everyone, as the audit log tells it."""

    since: datetime | None  # when it began; None when no event after the last off shows it
    began: dict[str, Any] | None  # the event that began it
    last_off: dict[str, Any] | None  # the last event that left the flag off, or on but not for everyone
    now: datetime


def check(conn: psycopg.Connection, min_hours: float = DEFAULT_MIN_HOURS) -> Checklist:
    schema.require_installed(conn)
    name = flags.ACCOUNT_DATA_PERSISTENCE
    flag = flags.current_flag(conn, name)
    if flag.released is not None:
        return _released_checklist(conn, flag, min_hours)
    period = on_for_everyone_period(conn, name)
    report = verify.check(conn, examples=EXAMPLES)
    lines = (
        _everyone_line(flag),
        _duration_line(flag, period, min_hours),
        _drift_line(report),
        _skips_line(report, recorded_skips(conn, period.since)),
    )
    return Checklist(name, min_hours, period.now, lines, report)


def _released_checklist(conn: psycopg.Connection, flag: flags.Flag, min_hours: float) -> Checklist:
    """After the release there is nothing left to check before it: one line that says it happened, and the drift
    report, which still matters (the sync keeps every customer up to date)."""
    assert flag.released is not None
    report = verify.check(conn, examples=EXAMPLES)
    lines = (Line("flag released", True, f"{flag.released.summary}; the sync is always on"), _drift_line(report))
    return Checklist(flag.name, min_hours, report.checked_at, lines, report)


_EVENT_COLUMNS = "id, occurred_at, operation, actor, reason, database_user, before, after"
# The flag row is on for everyone after an event when the row it left has both the kill switch and the
# everyone gate on. A DELETE leaves no row (after is NULL): off.
_ON_FOR_EVERYONE = "coalesce((after ->> 'enabled')::boolean AND (after ->> 'everyone')::boolean, false)"


def on_for_everyone_period(conn: psycopg.Connection, name: str) -> Period:
    """The last event that switched the flag off or took the everyone gate away, and the first event after it."""
    cur = conn.cursor(row_factory=dict_row)
    scope = "FROM billing_sync.feature_flag_events WHERE flag_name = %s AND table_name = 'feature_flags'"
    last_off = cur.execute(
        f"SELECT {_EVENT_COLUMNS} {scope} AND NOT {_ON_FOR_EVERYONE} ORDER BY id DESC LIMIT 1", (name,)
    ).fetchone()
    began = cur.execute(
        f"SELECT {_EVENT_COLUMNS} {scope} AND id > %s ORDER BY id LIMIT 1",
        (name, last_off["id"] if last_off else 0),
    ).fetchone()
    now_row = conn.execute("SELECT statement_timestamp()").fetchone()
    assert now_row is not None
    return Period(began["occurred_at"] if began else None, began, last_off, now_row[0])


def _everyone_line(flag: flags.Flag) -> Line:
    name = "flag on for everyone"
    if not flag.enabled:
        if flag.pulled:
            return Line(
                name,
                False,
                f"OFF: kill switch pulled (gates kept: {flag.gates});"
                f" `sync-admin flag resume {flag.name}` once it is safe",
            )
        return Line(name, False, f"OFF: no gate set; `sync-admin flag enable {flag.name} --everyone`")
    if not flag.everyone:
        return Line(
            name,
            False,
            f"ON, but not for everyone (gates: {flag.gates}): `sync-admin flag enable {flag.name} --everyone`",
        )
    return Line(name, True, "ON for everyone")


def _duration_line(flag: flags.Flag, period: Period, min_hours: float) -> Line:
    name = f"on for everyone for at least {min_hours:g} h without a kill-switch event"
    off = (
        _describe(period.last_off, "last " + _what_ended(period.last_off))
        if period.last_off
        else "no kill-switch event"
    )
    if not (flag.enabled and flag.everyone):
        return Line(name, False, f"not on for everyone now; {off}; the period starts when it is")
    if period.since is None or period.began is None:
        return Line(name, False, f"no audit event shows when the everyone period began; {off}")
    hours = (period.now - period.since).total_seconds() / 3600
    since = _describe(period.began, "since")
    if hours < min_hours:
        ready = period.since + timedelta(hours=min_hours)
        return Line(name, False, f"only {hours:.1f} h, {since}; {off}; check again after {ready:%Y-%m-%d %H:%M%z}")
    return Line(name, True, f"{hours:.1f} h, {since}; {off}")


def _what_ended(event: dict[str, Any]) -> str:
    """What an event that left the flag not on for everyone did: pulled the kill switch, took the everyone gate
    away, deleted the row, or only changed the rollout before everyone (a percentage, actors)."""
    before = event.get("before") if isinstance(event.get("before"), dict) else {}
    after = event.get("after") if isinstance(event.get("after"), dict) else {}
    if event["operation"] == "RELEASE":
        return "release"
    if event["operation"] == "DELETE" or not after:
        return "flag deleted"
    if before.get("enabled") and not after.get("enabled"):
        return "kill-switch"
    if before.get("everyone") and not after.get("everyone"):
        return "everyone-gate-removed"
    return "rollout change (before everyone)"


def _describe(event: dict[str, Any], what: str) -> str:
    who = event["actor"] or event["database_user"]
    why = f", reason {event['reason']!r}" if event["reason"] else ""
    return f"{what} event #{event['id']} at {event['occurred_at']:%Y-%m-%d %H:%M:%S%z} by {who}{why}"


def _drift_line(report: verify.Report) -> Line:
    name = "zero drift"
    if report.clean:
        return Line(name, True, f"no drift across {report.in_rollout:,} customers in the rollout")
    parts = [f"{item.label}: {item.rows:,} ({_examples(item)})" for item in report.drift if item.rows]
    return Line(name, False, "; ".join(parts) + "; run `sync-admin backfill`, then check again")


@dataclass(frozen=True)
class RecordedSkips:
    """Skip events (billing_sync.sync_events) since the on-for-everyone period began."""

    count: int
    reasons: str  # "not_an_account: 2, account_contended: 1"


def recorded_skips(conn: psycopg.Connection, since: datetime | None) -> RecordedSkips:
    if since is None:
        return RecordedSkips(0, "")
    rows = conn.execute(
        "SELECT e.reason, count(*) FROM billing_sync.sync_events e WHERE e.occurred_at >= %s"
        " AND NOT (e.reason = 'account_contended'"
        " AND NOT EXISTS (SELECT 1 FROM billing_sync.sync_repairs q WHERE q.customer_id = e.customer_id))"
        " GROUP BY e.reason ORDER BY 2 DESC",
        (since,),
    ).fetchall()
    return RecordedSkips(sum(count for _, count in rows), ", ".join(f"{reason}: {count}" for reason, count in rows))


def _skips_line(report: verify.Report, recorded: RecordedSkips) -> Line:
    """No skip recorded since the everyone period began, and no customer whose value is a skip now."""
    name = "no sync skips"
    problems = []
    if recorded.count:
        problems.append(
            f"{recorded.count:,} skips recorded since the everyone period began ({recorded.reasons}):"
            " `sync-admin errors` shows them; once their cause is fixed, the check needs a clean period on for"
            " everyone (skips recorded before the period began do not count)"
        )
    if report.skips.rows:
        skips = report.skips
        who = "1 customer in the rollout has" if skips.rows == 1 else f"{skips.rows:,} customers in the rollout have"
        problems.append(
            f"{who} a zuora_account_id that is not an account ({_examples(skips)}): correct those values, or set"
            " them to NULL for customers without an account (`sync-admin verify --examples 100` lists them)"
        )
    if problems:
        return Line(name, False, "; ".join(problems))
    return Line(name, True, "no skip recorded since the everyone period began, no customer's value is a skip now")


def _examples(item: verify.Item) -> str:
    ids = ", ".join(map(str, item.examples))
    return f"e.g. customers {ids}" if ids else "no examples"
