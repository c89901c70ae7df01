"""The release of account_data_persistence (revision 0013): whether and when the flag was retired, and the options
of the release guard (sql/release/account_data_persistence_guard_v1.sql).

After the release the sync is always on, the flag row and its actors are gone, and the audit log keeps one RELEASE
record (who, why, the rollout check it passed or the override it took, the flag as it was). A downgrade to the
revision before puts the flag back on for everyone and records RESTORE; the newest of the two says which holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sync_admin import defaults
from sync_admin.errors import BadInput
from sync_admin.manifest import PRE_RELEASE_REVISION, RELEASE_REVISION

FLAG = "account_data_persistence"
ROLLBACK_COMMAND = f"sync-admin db downgrade {PRE_RELEASE_REVISION}"


@dataclass(frozen=True)
class Release:
    """The RELEASE record in force: who retired the flag, when, why, and with which verdict of the guard."""

    flag: str
    event_id: int
    released_at: datetime
    actor: str
    database_user: str
    reason: str | None
    revision: str
    check_passed: bool
    overridden: bool
    override: str | None
    blockers: tuple[str, ...]  # what the rollout check still missed, when the guard was overridden
    new_database: bool
    min_hours: float | None  # the verification period the guard required
    before: dict[str, Any]  # the flag row and its actors as they were released

    @property
    def summary(self) -> str:
        """`released 2026-12-01 10:00 UTC by alice (revision 0013, rollout check passed)`."""
        if self.new_database:
            verdict = "new database"
        elif self.check_passed:
            verdict = f"rollout check passed{self._period()}"
        elif self.overridden:
            verdict = f"rollout check overridden: {self.override}"
        else:
            verdict = "the record of its rollout check is unreadable"
        return f"released {self.released_at:%Y-%m-%d %H:%M %Z} by {self.actor} (revision {self.revision}, {verdict})"

    def _period(self) -> str:
        """The verification period, when it was not the default one."""
        if self.min_hours is None or self.min_hours == defaults.ROLLOUT_MIN_HOURS:
            return ""
        return f" with a verification period of {self.min_hours:g} h"

    def as_json(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "released": True,
            "event_id": self.event_id,
            "released_at": self.released_at.isoformat(),
            "actor": self.actor,
            "database_user": self.database_user,
            "reason": self.reason,
            "revision": self.revision,
            "check_passed": self.check_passed,
            "override": self.override,
            "blockers": list(self.blockers),
            "new_database": self.new_database,
            "min_hours": self.min_hours,
        }


class FlagReleased(BadInput):
    """A flag command on a flag that was released: it no longer exists, the sync is always on."""

    def __init__(self, release: Release) -> None:
        super().__init__(
            f"{release.flag} was {release.summary}: the sync is always on and the flag no longer exists;"
            f" its history: `sync-admin flag history {release.flag}`; to bring the flag back (the rollback of the"
            f" release, on for everyone): `{ROLLBACK_COMMAND}`"
        )
        self.release = release


_LAST_RELEASE_OR_RESTORE = """
SELECT id, occurred_at, operation, actor, database_user, reason, before, after
FROM billing_sync.feature_flag_events
WHERE flag_name = %s AND operation IN ('RELEASE', 'RESTORE')
ORDER BY id DESC
LIMIT 1
"""


def released(conn: psycopg.Connection, flag: str = FLAG) -> Release | None:
    """The release in force for FLAG: its RELEASE record, unless a RESTORE (a downgrade) came after it."""
    row = conn.cursor(row_factory=dict_row).execute(_LAST_RELEASE_OR_RESTORE, (flag,)).fetchone()
    if row is None or row["operation"] != "RELEASE":
        return None
    return _release(flag, row)


def _release(flag: str, row: dict[str, Any]) -> Release:
    # The record's JSON is read defensively: it is written by the release revision, but it lives in a table that
    # an owner can edit, and nothing here may fail on its shape.
    verdict = row["after"] if isinstance(row["after"], dict) else {}
    before = row["before"] if isinstance(row["before"], dict) else {}
    override = verdict.get("override")
    blockers = verdict.get("blockers")
    return Release(
        flag=flag,
        event_id=row["id"],
        released_at=row["occurred_at"],
        actor=row["actor"] or row["database_user"],
        database_user=row["database_user"],
        reason=row["reason"],
        revision=str(verdict.get("revision") or RELEASE_REVISION),
        check_passed=verdict.get("check_passed") is True,
        overridden=isinstance(override, str) and bool(override),
        override=override if isinstance(override, str) else None,
        blockers=tuple(str(item) for item in blockers) if isinstance(blockers, list) else (),
        new_database=verdict.get("new_database") is True,
        min_hours=_hours(verdict.get("min_hours")),
        before=before,
    )


def _hours(value: object) -> float | None:
    """A finite number of hours, or None (the record is read back from a table its owner can edit)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        hours = float(value)
    except OverflowError:
        return None
    return hours if math.isfinite(hours) else None


def require_not_released(conn: psycopg.Connection, flag: str) -> None:
    """Raise FlagReleased when FLAG was released (before a command that needs the flag row)."""
    release = released(conn, flag)
    if release is not None:
        raise FlagReleased(release)


@dataclass(frozen=True)
class GuardOptions:
    """What `sync-admin db upgrade` hands the release guard (session settings, see migrations/env.py)."""

    override: str | None = None
    min_hours: float | None = None
    actor: str | None = None
    reason: str | None = None

    def settings(self) -> dict[str, str]:
        given = {
            "release_override": self.override,
            "release_min_hours": None if self.min_hours is None else f"{self.min_hours:f}".rstrip("0").rstrip("."),
            "actor": self.actor,
            "reason": self.reason,
        }
        return {key: value for key, value in given.items() if value}
