"""How skip events look on a terminal: one line per skip, the `errors` summary, the watch heartbeat.

The offending values are whatever an application wrote: control characters, terminal escape
sequences, right-to-left overrides. They are shown escaped (`\\x1b`, `\\u202e`), so that printing an
event can never move the cursor, recolour the terminal or reorder the line.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sync_admin.durations import describe
from sync_admin.events import PruneResult, SkipEvent, Summary

SHOWN_CHARACTERS = 80  # of the (up to 200) stored characters, on one terminal line


def timestamp(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")


def escape(text: str) -> str:
    """Printable characters as they are; everything else (controls, format characters) as an escape."""
    return "".join(ch if ch.isprintable() and ch != "\\" else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown_value(event: SkipEvent) -> str:
    """'bad value' (9 chars), the escaped value cut for the line, with its full length when cut."""
    if event.value is None:
        return "NULL"
    cut = event.value[:SHOWN_CHARACTERS]
    suffix = "..." if event.value_length and event.value_length > len(cut) else ""
    return f"'{escape(cut)}'{suffix} ({event.value_length} chars)"


def skip_line(event: SkipEvent) -> str:
    who = event.database_user + (f"/{escape(event.application_name)}" if event.application_name else "")
    return (
        f"{timestamp(event.occurred_at)} skip {event.reason}: customer {event.customer_id} {event.operation}"
        f" value {shown_value(event)} txid {event.transaction_id} by {who} (event {event.id})"
    )


def summary_lines(summary: Summary, since_text: str) -> list[str]:
    header = f"sync skips since {timestamp(summary.since)} (last {since_text}): {summary.events} events"
    if not summary.reasons:
        return [header + ", none"]
    lines = [header]
    for reason in summary.reasons:
        lines.append(
            f"  {reason.reason}: {reason.events} events, {reason.customers} customers,"
            f" last at {timestamp(reason.last_seen)}"
        )
        lines += [f"    {skip_line(event)}" for event in reason.examples]
    return lines


def heartbeat_line(now: datetime, interval: Counter[str], total: Counter[str], seconds: float) -> str:
    counts = ", ".join(f"{reason} {count}" for reason, count in sorted(interval.items())) or "none"
    return (
        f"{timestamp(now)} heartbeat: {interval.total()} skips in the last {seconds:g}s ({counts}),"
        f" {total.total()} since start"
    )


def prune_line(result: PruneResult, older_than: timedelta) -> str:
    older = describe(older_than)
    verb = "would delete" if result.dry_run else "deleted"
    return f"{verb} {result.deleted} events older than {older} (recorded before {timestamp(result.cutoff)})"
