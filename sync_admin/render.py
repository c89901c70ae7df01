"""How results look: rich tables on a terminal, JSON for automation, markdown for rollout issues."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table

from sync_admin.flags import Flag, FlagEvent
from sync_admin.terminal import printable


def timestamp(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else ""


def on_off(enabled: bool) -> str:
    return "on" if enabled else "off"


def table(title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    result = Table(title=None if title is None else printable(title), title_justify="left", show_lines=False)
    for header in headers:
        result.add_column(header)
    for row in rows:
        result.add_row(*("" if cell is None else printable(cell) for cell in row))
    return result


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else printable(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, sort_keys=False)


def flags_table(flags: Sequence[Flag]) -> Table:
    rows = ((f.name, state_word(f), f.gates, timestamp(f.updated_at)) for f in flags)
    return table(None, ("flag", "state", "gates", "updated at"), rows)


def state_word(flag: Flag) -> str:
    """ON, or why it is OFF: the kill switch pulled (gates kept), or no gate yet; RELEASED once retired."""
    if flag.released is not None:
        return "RELEASED (always on)"
    if flag.enabled:
        return "ON"
    return "OFF: kill switch pulled" if flag.pulled else "OFF: no gate"


def cohort(flag: Flag, in_rollout: int) -> str:
    """`4,940 customers (10 %, 2 actors)`, or `everyone (12,000 customers)`."""
    customers = f"{in_rollout:,} customer{'s' if in_rollout != 1 else ''}"
    if flag.everyone:
        return f"everyone ({customers})"
    parts = [f"{flag.percentage} %"] if flag.percentage else []
    if flag.actors:
        parts.append(f"{len(flag.actors)} actor{'s' if len(flag.actors) != 1 else ''}")
    return f"{customers} ({', '.join(parts) or 'no gate'})"


def state_line(flag: Flag, in_rollout: int, kill: FlagEvent | None = None) -> str:
    """The flag's state in one unambiguous line, the same in every command.

    `ON for 4,940 customers (10 %, 2 actors)` / `OFF: kill switch pulled by alice at 03:12 (INC-9); gates kept:
    everyone` / `OFF: no gate set`. `kill` is the event that pulled the kill switch (flags.last_kill).
    """
    if flag.released is not None:
        return f"RELEASED: always on, for {cohort(flag, in_rollout)}; {flag.released.summary}"
    if flag.enabled:
        return f"ON for {cohort(flag, in_rollout)}"
    if not flag.pulled and kill is None:
        return "OFF: no gate set"
    pulled = "OFF: kill switch pulled"
    if kill is not None:
        pulled += f" by {kill.actor or kill.database_user} at {timestamp(kill.occurred_at)}"
        pulled += f" ({kill.reason})" if kill.reason else ""
    return f"{pulled}; gates kept: {flag.gates}"


def flag_state_lines(flag: Flag, in_rollout: int, kill: FlagEvent | None = None) -> list[str]:
    actors = ", ".join(map(str, flag.actors[:20])) + (" ..." if len(flag.actors) > 20 else "")
    return [
        f"{flag.name}: {state_line(flag, in_rollout, kill)}",
        f"  everyone:   {'yes' if flag.everyone else 'no'}",
        f"  actors:     {len(flag.actors)}" + (f" ({actors})" if flag.actors else ""),
        f"  percentage: {flag.percentage} %",
    ]


def flag_status_lines(flag: Flag, in_rollout: int, last: FlagEvent | None, kill: FlagEvent | None = None) -> list[str]:
    lines = flag_state_lines(flag, in_rollout, kill)
    if last is not None:
        who = last.actor or last.database_user
        why = f" ({last.reason})" if last.reason else ""
        lines.append(f"  last change: {describe_change(last)} by {who}{why} at {timestamp(last.occurred_at)}")
    return lines


HISTORY_HEADERS = ("when", "operation", "change", "actor", "reason", "database user", "application")


def describe_change(event: FlagEvent) -> str:
    """`enabled: false -> true`, one part per column that changed."""
    # Read back from the audit table, which its owner can edit: anything but an object reads as empty.
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    keys = [k for k in dict.fromkeys([*before, *after]) if k != "updated_at" and before.get(k) != after.get(k)]
    if event.operation == "INSERT":
        return "created " + ", ".join(f"{k}={json.dumps(after.get(k))}" for k in keys)
    if event.operation == "DELETE":
        return "deleted " + ", ".join(f"{k}={json.dumps(before.get(k))}" for k in keys)
    if event.operation in ("RELEASE", "RESTORE"):
        return release_change(event.operation, before, after)
    return ", ".join(f"{k}: {json.dumps(before.get(k))} -> {json.dumps(after.get(k))}" for k in keys)


def release_change(operation: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """The release record (the flag retired, the check it passed or the override) and its undoing (the flag back)."""
    if operation == "RESTORE":
        actors = after.get("actors")
        count = len(actors) if isinstance(actors, list) else 0
        percentage = after.get("percentage")
        return f"restored by a downgrade of the release: on for everyone, percentage={percentage}, {count} actors"
    blockers = after.get("blockers")
    missing = "; ".join(map(str, blockers)) if isinstance(blockers, list) else "unknown"
    if after.get("new_database") is True:
        verdict = "new database"
    elif after.get("check_passed") is True:
        verdict = "rollout check passed"
    elif isinstance(after.get("override"), str):
        verdict = f"rollout check overridden ({after['override']}): {missing}"
    else:
        verdict = "the record of its rollout check is unreadable"
    return f"released (revision {after.get('revision')}): the flag retired, the sync always on; {verdict}"


def history_rows(events: Sequence[FlagEvent]) -> list[tuple[Any, ...]]:
    return [
        (
            timestamp(e.occurred_at),
            e.operation,
            describe_change(e),
            e.actor,
            e.reason,
            e.database_user,
            e.application_name,
        )
        for e in events
    ]
