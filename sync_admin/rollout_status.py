"""The rollout across environments: each one's state side by side (`rollout status`), and the staging gate of
`rollout check --env NAME` (every environment before NAME passed its own rollout check).

Each environment is read on a connection of its own. One that cannot be reached, is not migrated, or fails while
being read is reported with why (masked), never skipped and never taken for a pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from sync_admin import backfill, db, environments, events, flags, render, rollout, schema, verify
from sync_admin.errors import SyncAdminError

if TYPE_CHECKING:
    from sync_admin.release import Release

FLAG = flags.ACCOUNT_DATA_PERSISTENCE
SKIPS_WINDOW = timedelta(hours=24)
T = TypeVar("T")


class Unreachable(Exception):
    """An environment whose database cannot be used; the message (masked) says why."""


def visit(environment: environments.Environment, read: Callable[[psycopg.Connection], T]) -> T:
    """READ on a connection to ENVIRONMENT's migrated database; Unreachable (with why) when that fails.

    A failure while reading counts as well: for the rollout, an environment that cannot be read is as unknown as
    one that cannot be reached.
    """
    try:
        with db.connect(environment.url(), autocommit=True) as conn:
            schema.require_migrated(conn)
            return read(conn)
    except SyncAdminError as exc:
        raise Unreachable(db.mask(str(exc))) from None
    except psycopg.Error as exc:
        raise Unreachable(db.mask(db.permission_denied(exc) or f"database error: {db.first_line(exc)}")) from None


def when(value: datetime | None) -> str:
    """A moment as every environment's line shows it: in UTC to the minute (their servers' zones may differ)."""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if value else ""


def who(event: flags.FlagEvent) -> str:
    return event.actor or event.database_user


def flag_state(conn: psycopg.Connection) -> tuple[flags.Flag | None, Release | None]:
    """(its row, None) while the flag is rolled out; (None, its release) once released, whatever row may have been
    created by hand since (nothing reads it: the sync is always on); (None, None) when the row is gone without one.
    A released flag has no row, only its history in feature_flag_events."""
    release = released(conn)
    if release is not None:
        return None, release
    return next((flag for flag in flags.list_flags(conn) if flag.name == FLAG), None), None


_EVENT = """
    SELECT id, occurred_at, flag_name, table_name, operation, database_user, application_name, actor, reason,
           before, after
    FROM billing_sync.feature_flag_events WHERE flag_name = %s AND {condition} ORDER BY id {direction} LIMIT 1
"""


def flag_event(conn: psycopg.Connection, condition: str, *, newest: bool = False) -> flags.FlagEvent | None:
    """The flag's first (or newest) audit event that meets CONDITION (SQL over the event's columns). Read directly:
    the flag's row may be gone (released), and its history with it is all there is."""
    query = _EVENT.format(condition=condition, direction="DESC" if newest else "")
    row = conn.cursor(row_factory=dict_row).execute(query, (FLAG,)).fetchone()  # type: ignore[arg-type]
    return flags.FlagEvent(**row) if row else None


def released(conn: psycopg.Connection) -> Release | None:
    from sync_admin import release

    return release.released(conn, FLAG)


# --- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """One environment as `rollout status` shows it; `error` set (and nothing else) when it cannot be read."""

    name: str
    source: str
    error: str | None = None
    flag: flags.Flag | None = None
    state: str = ""
    in_rollout: int = 0
    last: flags.FlagEvent | None = None
    release: Release | None = None
    report: verify.Report | None = None
    skips: events.Summary | None = None
    backfill: backfill.Run | None = None

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"environment": self.name, "source": self.source, "reachable": False, "error": self.error}
        return {
            "environment": self.name,
            "source": self.source,
            "reachable": True,
            "state": self.state,
            "flag": _flag_json(self.flag),
            "in_rollout": self.in_rollout,
            "customers": self.report.customers if self.report else None,
            "last_change": self.last.as_json() if self.last else None,
            "released": _release_json(self.release),
            "drift": _drift_json(self.report),
            "skips": self.skips.as_json() if self.skips else None,
            "backfill": self.backfill.as_json() if self.backfill else None,
        }


def _flag_json(flag: flags.Flag | None) -> dict[str, Any] | None:
    if flag is None:
        return None
    return {
        "enabled": flag.enabled,
        "everyone": flag.everyone,
        "percentage": flag.percentage,
        "actors": len(flag.actors),
        "pulled": flag.pulled,
    }


def _release_json(release: Release | None) -> dict[str, Any] | None:
    if release is None:
        return None
    return {
        "released_at": release.released_at.isoformat(),
        "actor": release.actor,
        "database_user": release.database_user,
        "reason": release.reason,
        "revision": release.revision,
        "overridden": release.overridden,
    }


def _drift_json(report: verify.Report | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {"clean": report.clean, "rows": report.drift_rows, **{item.name: item.rows for item in report.drift}}


def status(chosen: Sequence[environments.Environment]) -> list[Status]:
    """Every environment, in the order given (the rollout's)."""
    return [_status(environment) for environment in chosen]


def _status(environment: environments.Environment) -> Status:
    source = environment.describe()
    try:
        return visit(environment, lambda conn: _read_status(conn, environment.name, source))
    except Unreachable as exc:
        return Status(environment.name, source, error=str(exc))


def _read_status(conn: psycopg.Connection, name: str, source: str) -> Status:
    last = flag_event(conn, "true", newest=True)
    seen = Status(name, source, last=last, skips=events.summary(conn, SKIPS_WINDOW, 0), backfill=_last_run(conn))
    flag, release = flag_state(conn)
    if release is not None:  # the drift still matters: the sync keeps every customer up to date
        report = verify.check(conn, examples=0)
        state = f"released {when(release.released_at)} by {release.actor}"
        return dataclasses.replace(seen, state=state, release=release, report=report, in_rollout=report.in_rollout)
    if flag is None:
        return dataclasses.replace(seen, state=_gone(last))
    in_rollout = flags.rollout_count(conn, FLAG)
    state = render.state_line(flag, in_rollout, flags.last_kill(conn, FLAG))
    report = verify.check(conn, examples=0)
    return dataclasses.replace(seen, flag=flag, state=state, in_rollout=in_rollout, report=report)


def _last_run(conn: psycopg.Connection) -> backfill.Run | None:
    runs = backfill.runs(conn, 1)
    return runs[0] if runs else None


def _gone(last: flags.FlagEvent | None) -> str:
    """The state of a flag whose row is gone without a release (deleted by hand, before revision 0012 forbade it)."""
    if last is not None and last.operation == "DELETE":
        return f"no flag row: deleted {when(last.occurred_at)} by {who(last)} without a release"
    return "no flag row"


def unreachable(statuses: Sequence[Status]) -> list[Status]:
    return [item for item in statuses if item.error is not None]


# --- the staging gate of `rollout check --env NAME` ---------------------------------------------------


def with_staging_gates(checklist: rollout.Checklist, target: str, min_hours: float) -> rollout.Checklist:
    """CHECKLIST (TARGET's own) with one line first per environment the rollout reaches before TARGET."""
    earlier = environments.load().before(target)
    gates = tuple(staging_gate(environment, min_hours) for environment in earlier)
    return dataclasses.replace(checklist, lines=gates + checklist.lines)


def staging_gate(environment: environments.Environment, min_hours: float) -> rollout.Line:
    """ENVIRONMENT's own rollout check (on for everyone for min_hours without a kill-switch event, no drift, no
    skips) as one line; a failure to reach it fails the gate."""
    name = f"staging gate ({environment.name})"
    try:
        passed, evidence = visit(environment, lambda conn: _gate(conn, environment.name, min_hours))
    except Unreachable as exc:
        return rollout.Line(name, False, f"{environment.name} cannot be checked: {exc}")
    return rollout.Line(name, passed, evidence)


def _gate(conn: psycopg.Connection, name: str, min_hours: float) -> tuple[bool, str]:
    flag, release = flag_state(conn)
    if release is not None:  # retired there: the release's guard ran the same check (or was overridden: say so)
        how = "with its rollout check overridden" if release.overridden else "its rollout check passed"
        return not release.overridden, f"released there {when(release.released_at)} by {release.actor}, {how}"
    if flag is None:
        return False, "the flag row is gone and no release is recorded"
    checklist = rollout.check(conn, min_hours)
    if checklist.passed:
        return True, "rollout check passed: " + "; ".join(line.evidence for line in checklist.lines)
    failed = [f"{line.name}: {line.evidence}" for line in checklist.lines if not line.passed]
    # The next steps the evidence names are for that environment, not the one checked.
    steps = f" (run them with `sync-admin --env {name} ...`)"
    return False, f"rollout check failed ({len(failed)} of {len(checklist.lines)}): " + "; ".join(failed) + steps
