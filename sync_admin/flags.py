"""Feature flags in billing_sync.feature_flags: read, switch, and their audit history.

Every change goes through plain SQL on the flag table, exactly as a person at psql would
do it, so the audit trigger records CLI and SQL changes alike. Who and why are handed to
that trigger in transaction-local settings (safe under PgBouncer transaction pooling).
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sync_admin import release
from sync_admin.errors import BadInput

ACCOUNT_DATA_PERSISTENCE = "account_data_persistence"
ACTOR_SETTING = "billing_sync.actor"
REASON_SETTING = "billing_sync.reason"


@dataclass(frozen=True)
class Flag:
    """A flag row and its actors. `enabled` is the kill switch; the gates say for whom."""

    name: str
    enabled: bool
    everyone: bool
    percentage: int
    actors: tuple[int, ...]
    updated_at: datetime
    # Set when the flag was released (revision 0013): its row is gone and the sync is on for every customer, so
    # the flag reads as enabled for everyone; the RELEASE record says when, by whom and with which check.
    released: release.Release | None = None

    @property
    def gates(self) -> str:
        parts = ["everyone"] if self.everyone else []
        if self.actors:
            parts.append(f"{len(self.actors)} actor{'s' if len(self.actors) != 1 else ''}")
        if self.percentage:
            parts.append(f"{self.percentage} %")
        return " + ".join(parts) or "no gate"

    @property
    def has_gate(self) -> bool:
        return self.everyone or bool(self.actors) or self.percentage > 0

    @property
    def pulled(self) -> bool:
        """The kill switch is pulled: off for every customer, with gates that resume would bring back."""
        return not self.enabled and self.has_gate


@dataclass(frozen=True)
class FlagChange:
    before: Flag
    after: Flag

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def kept_off(self) -> bool:
        """A gate changed while the flag was off, and it stayed off (a pulled kill switch: only resume undoes it)."""
        return not self.before.enabled and not self.after.enabled and self.changed


@dataclass(frozen=True)
class Explanation:
    """Whether a flag is on for one customer, and which gate decided it."""

    flag: str
    customer_id: int
    enabled: bool
    gate: str
    bucket: int


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


def _in_transaction(change: Callable[..., FlagChange]) -> Callable[..., FlagChange]:
    """Run a flag change in one transaction of its own (a savepoint inside the caller's).

    The row lock and the transaction-local who/why settings only live inside a
    transaction; on an autocommit connection they would vanish after each statement.
    """

    @functools.wraps(change)
    def wrapper(conn: psycopg.Connection, *args: Any, **kwargs: Any) -> FlagChange:
        with conn.transaction():
            return change(conn, *args, **kwargs)

    return wrapper


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


_FLAG_QUERY = """
    SELECT f.name, f.enabled, f.everyone, f.percentage,
           coalesce(array_agg(a.customer_id ORDER BY a.customer_id) FILTER (WHERE a.customer_id IS NOT NULL), '{}'),
           f.updated_at
    FROM billing_sync.feature_flags f
    LEFT JOIN billing_sync.feature_flag_actors a ON a.flag_name = f.name
"""


def _flag(row: tuple[Any, ...]) -> Flag:
    name, enabled, everyone, percentage, actors, updated_at = row
    return Flag(name, enabled, everyone, percentage, tuple(actors), updated_at)


def list_flags(conn: psycopg.Connection) -> list[Flag]:
    rows = conn.execute(_FLAG_QUERY + " GROUP BY f.name ORDER BY f.name")
    return [_flag(row) for row in rows]


def get_flag(conn: psycopg.Connection, name: str, *, lock: bool = False) -> Flag:
    """One flag; lock=True first takes its row lock so that concurrent changes queue up."""
    # A released flag is refused even if someone created a row of that name by hand since: nothing reads it.
    release.require_not_released(conn, name)
    if lock:
        conn.execute("SELECT 1 FROM billing_sync.feature_flags WHERE name = %s FOR UPDATE", (name,))
    row = conn.execute(_FLAG_QUERY + " WHERE f.name = %s GROUP BY f.name", (name,)).fetchone()
    if row is None:
        # Released since the check above (the release's commit can fall between the two reads): say so.
        release.require_not_released(conn, name)
        known = ", ".join(flag.name for flag in list_flags(conn)) or "none"
        raise BadInput(f"unknown flag {name!r} (known flags: {known})")
    return _flag(row)


def current_flag(conn: psycopg.Connection, name: str) -> Flag:
    """The flag as the sync applies it: its row, or, once released, on for everyone with its release record (for
    the commands that report on the sync: verify, backfill, rollout check and status). Flag commands use get_flag,
    which refuses a released flag with one line."""
    done = release.released(conn, name)
    if done is None:
        return get_flag(conn, name)
    return Flag(name, True, True, 0, (), done.released_at, released=done)


WHO_TO_ENABLE = "say for whom: --everyone, --actor CUSTOMER_ID or --percentage P; nothing changed"


@_in_transaction
def enable(
    conn: psycopg.Connection,
    name: str,
    *,
    everyone: bool = False,
    actors: Sequence[int] = (),
    percentage: int | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> FlagChange:
    """Add gates: the everyone gate, actors and/or a percentage (other gates are kept: they combine with OR).

    Everyone is never implied: a call that names no gate is refused. The kill switch is turned on only when it
    is off without any gate (a new flag): when it was pulled, the gates change and it stays pulled, because
    switching it on would also bring back every other gate; only `resume` undoes the kill switch.
    """
    if not (everyone or actors or percentage is not None):
        raise BadInput(WHO_TO_ENABLE)
    _check_percentage(percentage)
    before = get_flag(conn, name, lock=True)
    # Pulled: off with gates it would bring back, or switched off by a kill switch (even with its gates removed
    # since: only resume undoes a kill switch, whatever happened to the gates meanwhile).
    pulled = before.pulled or (not before.enabled and last_kill(conn, name) is not None)
    _check_customers_exist(conn, actors)
    set_audit_context(conn, actor, reason)
    if actors:
        conn.execute(
            "INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id)"
            " SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
            (name, list(actors)),
        )
    conn.execute(
        "UPDATE billing_sync.feature_flags SET enabled = %s, everyone = %s, percentage = %s WHERE name = %s",
        (
            not pulled,
            before.everyone or everyone,
            before.percentage if percentage is None else percentage,
            name,
        ),
    )
    return FlagChange(before, get_flag(conn, name))


@_in_transaction
def disable(
    conn: psycopg.Connection,
    name: str,
    *,
    actors: Sequence[int] = (),
    everyone: bool = False,
    percentage: bool = False,
    actor: str | None = None,
    reason: str | None = None,
) -> FlagChange:
    """Without options, the kill switch: off for every customer, gates kept.

    With options, remove only those gates (actors, the everyone gate, the percentage),
    leaving the kill switch as it is.
    """
    before = get_flag(conn, name, lock=True)
    not_actors = sorted(set(actors) - set(before.actors))
    if not_actors:
        raise BadInput(f"not actors of {name}: {', '.join(map(str, not_actors))}; nothing changed")
    set_audit_context(conn, actor, reason)
    if actors:
        conn.execute(
            "DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = %s AND customer_id = ANY(%s::bigint[])",
            (name, list(actors)),
        )
    if everyone or percentage:
        conn.execute(
            "UPDATE billing_sync.feature_flags"
            " SET everyone = everyone AND NOT %s, percentage = CASE WHEN %s THEN 0 ELSE percentage END"
            " WHERE name = %s",
            (everyone, percentage, name),
        )
    if not (actors or everyone or percentage):
        conn.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (name,))
    return FlagChange(before, get_flag(conn, name))


@_in_transaction
def resume(conn: psycopg.Connection, name: str, *, actor: str | None = None, reason: str | None = None) -> FlagChange:
    """Switch the kill switch back on: the rollout resumes exactly as its gates say."""
    before = get_flag(conn, name, lock=True)
    set_audit_context(conn, actor, reason)
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (name,))
    return FlagChange(before, get_flag(conn, name))


def rollout_count(conn: psycopg.Connection, name: str) -> int:
    """How many customers the flag is on for right now: one set-based count, gates as the trigger reads them (every
    customer, once the flag is released)."""
    if current_flag(conn, name).released is not None:
        counted = conn.execute("SELECT count(*) FROM public.customers").fetchone()
        return int(counted[0]) if counted else 0
    row = conn.execute(
        """
        SELECT CASE
            WHEN NOT f.enabled THEN 0
            WHEN f.everyone THEN (SELECT count(*) FROM public.customers)
            ELSE (
                SELECT count(*) FROM public.customers c
                WHERE EXISTS (
                        SELECT 1 FROM billing_sync.feature_flag_actors a
                        WHERE a.flag_name = f.name AND a.customer_id = c.id)
                   OR (f.percentage > 0 AND billing_sync.unleash_bucket(f.name, c.id) <= f.percentage)
            )
        END
        FROM billing_sync.feature_flags f WHERE f.name = %s
        """,
        (name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def explain(conn: psycopg.Connection, name: str, customer_id: int) -> Explanation:
    """The verdict for one customer (from billing_sync.flag_enabled_for itself) and the gate that decided it."""
    flag = get_flag(conn, name)
    _check_customers_exist(conn, [customer_id])
    row = conn.execute(
        "SELECT billing_sync.flag_enabled_for(%s, %s), billing_sync.unleash_bucket(%s, %s)",
        (name, customer_id, name, customer_id),
    ).fetchone()
    assert row is not None
    enabled, bucket = row
    if not flag.enabled:
        gate = "kill switch: the flag is disabled for every customer"
    elif flag.everyone:
        gate = "everyone gate"
    elif customer_id in flag.actors:
        gate = "actor gate"
    elif flag.percentage and bucket <= flag.percentage:
        gate = f"percentage gate: bucket {bucket} <= {flag.percentage}%"
    else:
        gate = f"no gate: not an actor, bucket {bucket} > {flag.percentage}%"
    return Explanation(name, customer_id, bool(enabled), gate, bucket)


def _check_percentage(percentage: int | None) -> None:
    if percentage is not None and not 0 <= percentage <= 100:
        raise BadInput(f"percentage must be a whole number from 0 to 100, not {percentage}")


def _check_customers_exist(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    if not ids:
        return
    rows = conn.execute(
        "SELECT id FROM unnest(%s::bigint[]) AS given(id)"
        " WHERE NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = given.id) ORDER BY id",
        (list(ids),),
    ).fetchall()
    if rows:
        raise BadInput(f"unknown customer id: {', '.join(str(r[0]) for r in rows)}; nothing changed")


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


def last_kill(conn: psycopg.Connection, name: str) -> FlagEvent | None:
    """The event that pulled the kill switch now in force (enabled true -> false), if the flag is off."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        """
        SELECT id, occurred_at, flag_name, table_name, operation, database_user,
               application_name, actor, reason, before, after
        FROM billing_sync.feature_flag_events
        WHERE flag_name = %s AND table_name = 'feature_flags'
          AND (before ->> 'enabled') IS DISTINCT FROM (after ->> 'enabled')
        ORDER BY id DESC
        LIMIT 1
        """,
        (name,),
    ).fetchone()
    if row is None:
        return None
    if (row["before"] or {}).get("enabled") is not True or (row["after"] or {}).get("enabled") is not False:
        return None
    return FlagEvent(**row)


def get_flag_or_history(conn: psycopg.Connection, name: str) -> None:
    """A flag is known if it exists now or ever had an event (its history outlives it)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM billing_sync.feature_flags WHERE name = %s)"
        " OR EXISTS (SELECT 1 FROM billing_sync.feature_flag_events WHERE flag_name = %s)",
        (name, name),
    ).fetchone()
    if not (row and row[0]):
        get_flag(conn, name)  # raises the unknown-flag error with the list of known flags
