"""How the environments and the rollout across them read: `rollout envs`, `rollout status`, `rollout report`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from sync_admin import render, reports, rollout_report
from sync_admin.rollout_status import Status, when, who
from sync_admin.terminal import printable

# --- rollout status -------------------------------------------------------------------------------------

# The environments side by side, one column each (the rollout's order, left to right), one row per aspect.
ASPECTS = ("state", "cohort", "since", "drift", "skips (24 h)", "backfill", "last change")


def status_table(statuses: Sequence[Status]) -> Table:
    columns = [_status_cells(item) for item in statuses]
    rows = [(aspect, *(column[index] for column in columns)) for index, aspect in enumerate(ASPECTS)]
    return render.table(None, ("", *(item.name for item in statuses)), rows)


def _status_cells(item: Status) -> tuple[str, ...]:
    if item.error is not None:
        return ("CANNOT BE REACHED (below)", *("" for _ in ASPECTS[1:]))
    cells = (_cohort, _since, _drift, _skips, _backfill, _last)
    return (item.state, *(cell(item) for cell in cells))


def _cohort(item: Status) -> str:
    if item.report is None:
        return ""
    return f"{item.in_rollout:,} of {reports.count(item.report.customers, 'customer')}"


def _since(item: Status) -> str:
    if item.release is not None:
        return f"{when(item.release.released_at)} by {item.release.actor}"
    return f"{when(item.last.occurred_at)} by {who(item.last)}" if item.last else ""


def _drift(item: Status) -> str:
    report = item.report
    if report is None:
        return "-"
    if report.clean:
        return "none"
    parts = ", ".join(f"{part.label} {part.rows:,}" for part in report.drift if part.rows)
    return f"{reports.count(report.drift_rows, 'row')}: {parts}"


def _skips(item: Status) -> str:
    summary = item.skips
    if summary is None or not summary.events:
        return "none"
    reasons = ", ".join(f"{reason.reason}: {reason.events:,}" for reason in summary.reasons)
    return f"{summary.events:,} ({reasons})"


def _backfill(item: Status) -> str:
    run = item.backfill
    if run is None:
        return "never run"
    if run.status == "running":
        share = run.scanned / run.total * 100 if run.total else 100.0
        return f"#{run.id} running: {run.scanned:,}/{run.total:,} ({share:.0f} %) by {run.actor or run.database_user}"
    ended = when(run.finished_at or run.updated_at)
    return f"#{run.id} {run.status} {ended} by {run.actor or run.database_user}"


def _last(item: Status) -> str:
    if item.last is None:
        return ""
    why = f" ({item.last.reason})" if item.last.reason else ""
    return render.describe_change(item.last) + why


def unreachable_lines(statuses: Sequence[Status]) -> list[str]:
    return [f"{item.name} cannot be reached: {item.error}" for item in statuses if item.error is not None]


# --- rollout report ---------------------------------------------------------------------------------------


def _item(item: rollout_report.Item) -> str:
    return f"[{'x' if item.done else ' '}] {item.environment}: {item.title} ({printable(item.detail)})"


def report_lines(report: rollout_report.Report) -> list[str]:
    lines = [f"rollout of {report.flag} at {when(report.checked_at)} ({' -> '.join(report.order)})"]
    return lines + [f"  {_item(item)}" for item in report.items]


def report_markdown(report: rollout_report.Report) -> str:
    lines = [
        f"#### Rollout of `{report.flag}`",
        "",
        f"- **Checked at:** {when(report.checked_at)}",
        f"- **Environments:** {' -> '.join(report.order)}",
        "",
    ]
    lines += [f"- {_item(item)}" for item in report.items]
    return "\n".join(lines)
