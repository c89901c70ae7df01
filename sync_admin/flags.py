"""Feature flags in billing_sync.feature_flags: read, switch, and their audit history.

Every change goes through plain SQL on the flag table, exactly as a person at psql would
do it, so the audit trigger records CLI and SQL changes alike. Who and why are handed to
that trigger in transaction-local settings (safe under PgBouncer transaction pooling).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sync_admin.errors import BadInput

ACCOUNT_DATA_PERSISTENCE = "account_data_persistence"
ACTOR_SETTING = "billing_sync.actor"
REASON_SETTING = "billing_sync.reason"


@dataclass(frozen=True)
class Flag:
    name: str
    enabled: bool
    updated_at: datetime


@dataclass(frozen=True)
class FlagChange:
    before: Flag
    after: Flag

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class FlagEvent:
    id: int
    occurred_at: datetime
    flag_name: str
    table_name: str
    operation: str
    database_user: str
    application_name: str | None
    actor: str | None
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "occurred_at": self.occurred_at.isoformat()}


def default_actor() -> str:
    """The acting person when none is given: the OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def set_audit_context(conn: psycopg.Connection, actor: str | None, reason: str | None) -> None:
    """Tell the audit trigger who acts and why, for this transaction only."""
    conn.execute(
        "SELECT set_config(%s, %s, true), set_config(%s, %s, true)",
        (ACTOR_SETTING, actor or default_actor(), REASON_SETTING, reason or ""),
    )


def list_flags(conn: psycopg.Connection) -> list[Flag]:
    rows = conn.execute("SELECT name, enabled, updated_at FROM billing_sync.feature_flags ORDER BY name")
    return [Flag(*row) for row in rows]


def get_flag(conn: psycopg.Connection, name: str, *, lock: bool = False) -> Flag:
    query = "SELECT name, enabled, updated_at FROM billing_sync.feature_flags WHERE name = %s"
    row = conn.execute(query + (" FOR UPDATE" if lock else ""), (name,)).fetchone()
    if row is None:
        known = ", ".join(flag.name for flag in list_flags(conn)) or "none"
        raise BadInput(f"unknown flag {name!r} (known flags: {known})")
    return Flag(*row)


def set_enabled(
    conn: psycopg.Connection, name: str, enabled: bool, *, actor: str | None = None, reason: str | None = None
) -> FlagChange:
    """Switch a flag in the caller's transaction; an unchanged flag writes no audit row."""
    before = get_flag(conn, name, lock=True)
    set_audit_context(conn, actor, reason)
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = %s WHERE name = %s", (enabled, name))
    return FlagChange(before, get_flag(conn, name))


def history(conn: psycopg.Connection, name: str, *, limit: int | None = None) -> list[FlagEvent]:
    """The flag's audit events, oldest first (the newest `limit` when given)."""
    get_flag_or_history(conn, name)
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        """
        SELECT * FROM (
            SELECT id, occurred_at, flag_name, table_name, operation, database_user,
                   application_name, actor, reason, before, after
            FROM billing_sync.feature_flag_events
            WHERE flag_name = %s
            ORDER BY id DESC
            LIMIT %s
        ) newest ORDER BY id
        """,
        (name, limit),
    ).fetchall()
    return [FlagEvent(**row) for row in rows]


def get_flag_or_history(conn: psycopg.Connection, name: str) -> None:
    """A flag is known if it exists now or ever had an event (its history outlives it)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM billing_sync.feature_flags WHERE name = %s)"
        " OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_events WHERE flag_name = %s)",
        (name, name),
    ).fetchone()
    if not (row and row[0]):
        get_flag(conn, name)  # raises the unknown-flag error with the list of known flags
