"""How results look: rich tables on a terminal, JSON for automation, markdown for rollout issues."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table

from sync_admin.flags import Flag, FlagEvent


def timestamp(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else ""


def on_off(enabled: bool) -> str:
    return "on" if enabled else "off"


def table(title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    result = Table(title=title, title_justify="left", show_lines=False)
    for header in headers:
        result.add_column(header)
    for row in rows:
        result.add_row(*("" if cell is None else str(cell) for cell in row))
    return result


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, sort_keys=False)


def flags_table(flags: Sequence[Flag]) -> Table:
    rows = ((f.name, kill_switch(f.enabled), f.gates, timestamp(f.updated_at)) for f in flags)
    return table(None, ("flag", "kill switch", "gates", "updated at"), rows)


def kill_switch(enabled: bool) -> str:
    return "on (gates apply)" if enabled else "OFF (off for every customer)"


def flag_state_lines(flag: Flag, in_rollout: int) -> list[str]:
    actors = ", ".join(map(str, flag.actors[:20])) + (" ..." if len(flag.actors) > 20 else "")
    return [
        f"{flag.name}: kill switch {kill_switch(flag.enabled)}",
        f"  everyone:   {'yes' if flag.everyone else 'no'}",
        f"  actors:     {len(flag.actors)}" + (f" ({actors})" if flag.actors else ""),
        f"  percentage: {flag.percentage}%",
        f"  in rollout: {in_rollout} customer{'s' if in_rollout != 1 else ''} right now",
    ]


def flag_status_lines(flag: Flag, in_rollout: int, last: FlagEvent | None) -> list[str]:
    lines = flag_state_lines(flag, in_rollout)
    if last is not None:
        who = last.actor or last.database_user
        why = f" ({last.reason})" if last.reason else ""
        lines.append(f"  last change: {describe_change(last)} by {who}{why} at {timestamp(last.occurred_at)}")
    return lines


HISTORY_HEADERS = ("when", "operation", "change", "actor", "reason", "database user", "application")


def describe_change(event: FlagEvent) -> str:
    """`enabled: false -> true`, one part per column that changed."""
    before, after = event.before or {}, event.after or {}
    keys = [k for k in dict.fromkeys([*before, *after]) if k != "updated_at" and before.get(k) != after.get(k)]
    if event.operation == "INSERT":
        return "created " + ", ".join(f"{k}={json.dumps(after.get(k))}" for k in keys)
    if event.operation == "DELETE":
        return "deleted " + ", ".join(f"{k}={json.dumps(before.get(k))}" for k in keys)
    return ", ".join(f"{k}: {json.dumps(before.get(k))} -> {json.dumps(after.get(k))}" for k in keys)


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
