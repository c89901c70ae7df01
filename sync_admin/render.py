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
    return table(
        None,
        ("flag", "state", "updated at"),
        ((f.name, on_off(f.enabled), timestamp(f.updated_at)) for f in flags),
    )


HISTORY_HEADERS = ("when", "operation", "change", "actor", "reason", "database user", "application")


def describe_change(event: FlagEvent) -> str:
    """`enabled: false -> true`, one part per column that changed."""
    before, after = event.before or {}, event.after or {}
    keys = [
        k for k in dict.fromkeys([*before, *after]) if k != "updated_at" and before.get(k) != after.get(k)
    ]
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
