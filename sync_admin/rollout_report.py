"""`sync-admin rollout report`: the rollout issue's checklist, each item ticked from the environments' audit logs
(billing_sync.feature_flag_events) and state, with when and who.

The items: every environment before the target enabled and verified (on for everyone, its rollout check passes);
then on the target (production): testing customers (the first actor added), incremental rollout (the first
percentage above 0), global (on for everyone), verification day (its rollout check passes) and release (the flag
retired by the release, revision 0013: `sync-admin db upgrade`). A released flag has no row any more: the items
read its history and its release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from sync_admin import environments, flags, render, rollout
from sync_admin.rollout_status import FLAG, Unreachable, flag_event, flag_state, visit, when, who

if TYPE_CHECKING:
    from sync_admin.release import Release


@dataclass(frozen=True)
class Item:
    """One checklist item: `- [x] staging: enabled and verified (detail)`."""

    environment: str
    title: str
    done: bool
    detail: str
    at: datetime | None = None
    by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat() if self.at else None}


@dataclass(frozen=True)
class Report:
    flag: str
    checked_at: datetime
    order: tuple[str, ...]  # the environments, the target last
    items: tuple[Item, ...]
    unreachable: tuple[str, ...]  # environments that could not be read (their items say why)

    def as_json(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "checked_at": self.checked_at.isoformat(),
            "environments": list(self.order),
            "done": all(item.done for item in self.items),
            "items": [item.as_json() for item in self.items],
            "unreachable": list(self.unreachable),
        }


ENABLED_AND_VERIFIED = "enabled and verified"
TARGET_ITEMS = ("testing customers", "incremental rollout", "global", "verification day", "release")


def build(staging: Sequence[environments.Environment], target: environments.Environment, min_hours: float) -> Report:
    items: list[Item] = []
    unreachable: list[str] = []
    for environment in staging:
        try:
            items.append(visit(environment, lambda conn, name=environment.name: _staging(conn, name, min_hours)))
        except Unreachable as exc:
            unreachable.append(environment.name)
            items.append(Item(environment.name, ENABLED_AND_VERIFIED, False, f"cannot be reached: {exc}"))
    try:
        items += visit(target, lambda conn: _target(conn, target.name, min_hours))
    except Unreachable as exc:
        unreachable.append(target.name)
        items += [Item(target.name, title, False, f"cannot be reached: {exc}") for title in TARGET_ITEMS]
    order = tuple(environment.name for environment in (*staging, target))
    return Report(FLAG, datetime.now(UTC), order, tuple(items), tuple(unreachable))


# --- the audit log ------------------------------------------------------------------------------------

_ON_FOR_EVERYONE = "coalesce(({0} ->> 'enabled')::boolean AND ({0} ->> 'everyone')::boolean, false)"


def first_actor(conn: psycopg.Connection) -> flags.FlagEvent | None:
    return flag_event(conn, "table_name = 'feature_flag_actors' AND operation = 'INSERT'")


def first_percentage(conn: psycopg.Connection) -> flags.FlagEvent | None:
    return flag_event(conn, "table_name = 'feature_flags' AND coalesce((after ->> 'percentage')::int, 0) > 0")


def everyone_began(conn: psycopg.Connection) -> flags.FlagEvent | None:
    """The last event that turned the flag on for everyone (kill switch on and everyone gate on, not both before)."""
    condition = (
        f"table_name = 'feature_flags' AND {_ON_FOR_EVERYONE.format('after')}"
        f" AND NOT {_ON_FOR_EVERYONE.format('before')}"
    )
    return flag_event(conn, condition, newest=True)


def _by(event: flags.FlagEvent) -> str:
    return f"{when(event.occurred_at)} by {who(event)}"


# --- the items ------------------------------------------------------------------------------------------


def _staging(conn: psycopg.Connection, name: str, min_hours: float) -> Item:
    flag, release = flag_state(conn)
    if release is not None:  # verified by the release's guard, unless it was overridden
        detail = _released(release) + (" with its rollout check overridden" if release.overridden else "")
        return Item(name, ENABLED_AND_VERIFIED, not release.overridden, detail, release.released_at, release.actor)
    if flag is None:
        return Item(name, ENABLED_AND_VERIFIED, False, "the flag row is gone and no release is recorded")
    if not (flag.enabled and flag.everyone):
        state = render.state_line(flag, flags.rollout_count(conn, FLAG), flags.last_kill(conn, FLAG))
        return Item(name, ENABLED_AND_VERIFIED, False, f"not on for everyone: {state}")
    began = everyone_began(conn)
    checklist = rollout.check(conn, min_hours)
    since = f"on for everyone since {_by(began)}" if began else "on for everyone"
    return Item(
        name,
        ENABLED_AND_VERIFIED,
        checklist.passed,
        f"{since}; {_verdict(checklist)}",
        began.occurred_at if began else None,
        who(began) if began else None,
    )


def _verdict(checklist: rollout.Checklist) -> str:
    if checklist.passed:
        return "check passed"
    return "check failed: " + ", ".join(line.name for line in checklist.lines if not line.passed)


def _released(release: Release) -> str:
    return f"released {when(release.released_at)} by {release.actor}"


def _target(conn: psycopg.Connection, name: str, min_hours: float) -> list[Item]:
    flag, release = flag_state(conn)
    return [
        _testing_customers(conn, name),
        _incremental(conn, name),
        _global(conn, name, flag, release),
        _verification(conn, name, flag, release, min_hours),
        _release(name, release),
    ]


def _testing_customers(conn: psycopg.Connection, name: str) -> Item:
    event = first_actor(conn)
    if event is None:
        return Item(name, "testing customers", False, "no actor added yet")
    customer = (event.after or {}).get("customer_id")
    detail = f"first actor (customer {customer}) added {_by(event)}"
    return Item(name, "testing customers", True, detail, event.occurred_at, who(event))


def _incremental(conn: psycopg.Connection, name: str) -> Item:
    event = first_percentage(conn)
    if event is None:
        return Item(name, "incremental rollout", False, "no percentage set yet")
    percentage = (event.after or {}).get("percentage")
    detail = f"first at {percentage} %, {_by(event)}"
    return Item(name, "incremental rollout", True, detail, event.occurred_at, who(event))


def _global(conn: psycopg.Connection, name: str, flag: flags.Flag | None, release: Release | None) -> Item:
    began = everyone_began(conn)
    since = f"since {_by(began)}" if began else ""
    at, by = (began.occurred_at, who(began)) if began else (None, None)
    if release is not None:  # the sync is on for every customer since; the gate before it, if it ever was on
        if began is None:  # a new database, released at once
            return Item(name, "global", True, f"on for everyone since its release {when(release.released_at)}")
        return Item(
            name, "global", True, f"on for everyone {since} until its release {when(release.released_at)}", at, by
        )
    if flag is None:
        return Item(name, "global", False, "the flag row is gone and no release is recorded")
    if flag.enabled and flag.everyone:
        return Item(name, "global", True, f"on for everyone {since}".strip(), at, by)
    state = render.state_line(flag, flags.rollout_count(conn, FLAG), flags.last_kill(conn, FLAG))
    return Item(name, "global", False, f"not on for everyone: {state}")


def _verification(
    conn: psycopg.Connection, name: str, flag: flags.Flag | None, release: Release | None, min_hours: float
) -> Item:
    title = "verification day"
    if release is not None:  # its guard ran the rollout check: passed, overridden, or nothing to check
        if release.overridden:
            return Item(name, title, False, f"not verified: {_released(release)} with the check overridden")
        if release.new_database:
            return Item(name, title, True, f"a new database, released at once {when(release.released_at)}")
        return Item(name, title, True, f"the rollout check passed at its release {when(release.released_at)}")
    if flag is None:
        return Item(name, title, False, "the flag row is gone and no release is recorded")
    checklist = rollout.check(conn, min_hours)
    if not checklist.passed:
        return Item(name, title, False, f"rollout {_verdict(checklist)}")
    period = rollout.on_for_everyone_period(conn, FLAG)
    hours = (period.now - period.since).total_seconds() / 3600 if period.since else 0.0
    detail = f"rollout check passed: on for everyone {hours:.1f} h (at least {min_hours:g} h), no drift, no skips"
    return Item(name, title, True, detail, checklist.checked_at)


def _release(name: str, release: Release | None) -> Item:
    if release is None:
        return Item(name, "release", False, "not released yet")
    why = f" ({release.reason})" if release.reason else ""
    detail = f"{_released(release)}{why}: the flag retired by revision {release.revision}"
    return Item(name, "release", True, detail, release.released_at, release.actor)
