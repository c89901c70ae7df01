"""How the backfill, the drift check and the rollout checklist read: text lines and markdown.

Plain strings (no rich markup), so that the same text goes to a terminal, a CI log or an issue.
"""

from __future__ import annotations

from datetime import datetime

from sync_admin import backfill, render, rollout, verify
from sync_admin.flags import Flag


def count(value: int, unit: str, plural: str | None = None) -> str:
    """`1 customer`, `1,234 customers`."""
    return f"{value:,} {unit if value == 1 else plural or unit + 's'}"


def when(value: datetime | None) -> str:
    return render.timestamp(value)


# --- backfill -----------------------------------------------------------------------------------


def backfill_lines(result: backfill.Result) -> list[str]:
    run = result.run
    if run is None:
        return [f"{result.flag.name} is off for every customer ({_off_reason(result.flag)}): nothing to backfill"]
    lines = []
    if result.flag.released is not None:
        lines.append(f"{result.flag.name} {result.flag.released.summary}: every customer is in the sync")
    if result.abandoned is not None:
        lines.append(f"abandoned run #{result.abandoned.id} ({_position(result.abandoned)}); started over")
    if result.resumed:
        lines.append(f"resumed run #{run.id} (started {when(run.started_at)})")
    retries = f", {count(result.retries, 'retry', 'retries')}" if result.retries else ""
    why = f" ({run.reason})" if run.reason else ""
    lines.append(
        f"backfill run #{run.id} by {run.actor or run.database_user}{why} finished:"
        f" {count(run.batches, 'batch', 'batches')},"
        f" {result.seconds:.1f} s in this session (last batch size {result.batch_size:,}{retries})"
    )
    lines.append(
        f"  customers:        {run.scanned:,} looked at (ids up to {run.max_id}), {run.in_rollout:,} in the rollout,"
        f" {run.out_of_state:,} not in their derived state"
    )
    if run.busy:
        lines.append(
            f"  retried:          {run.busy:,} times a customer held by a live transaction (or its new account) was"
            " skipped, never waited for, and done later by the sweep"
        )
    if result.in_flight:
        lines.append(
            f"  in flight:        {result.in_flight:,} customers written meanwhile have their repair queued by their"
            " own write; `sync-admin heal` does them once those transactions end"
        )
    if not run.changed:
        if not run.busy:
            lines.append("  nothing changed: every customer in the rollout was already in its derived state")
        return lines
    lines.append(f"  billing accounts: {run.accounts_created:,} created")
    lines.append(f"  memberships:      {run.memberships_added:,} added, {run.memberships_removed:,} removed")
    return lines


def _off_reason(flag: Flag) -> str:
    return "the kill switch is pulled" if flag.pulled else "no gate is set"


def _position(run: backfill.Run) -> str:
    if run.last_id is None:
        return "before its first batch"
    return f"at customer id {run.last_id}, {run.scanned:,} of {run.total:,} customers done"


def preview_lines(preview: backfill.Preview) -> list[str]:
    report = preview.report
    lines = ["dry run: nothing changed."]
    if report.clean:
        lines.append(
            f"  nothing to change: all {report.in_rollout:,} customers in the rollout are in their derived state"
        )
    else:
        lines += [
            f"  a backfill now would create {count(preview.accounts_to_create, 'billing account')},",
            f"  add {count(preview.memberships_to_add, 'membership')}"
            f" and remove {count(preview.memberships_to_remove, 'membership')},",
            f"  among {report.in_rollout:,} customers in the rollout",
        ]
    if preview.unfinished is not None:
        lines.append(
            f"  unfinished run #{preview.unfinished.id} ({_position(preview.unfinished)}) would be resumed"
            " (--restart starts over)"
        )
    return lines


def progress_line(progress: backfill.Progress, rate: float | None) -> str:
    run = progress.run
    share = run.scanned / run.total * 100 if run.total else 100.0
    eta = ""
    if rate and run.status == "running":
        eta = f", ETA {_duration((run.total - run.scanned) / rate)}"
    speed = f", {rate:,.0f} customers/s" if rate else ""
    return (
        f"backfill run #{run.id}: {run.scanned:,}/{run.total:,} customers ({share:.1f}%){speed}{eta},"
        f" batch size {progress.batch_size:,}"
    )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


# --- verify -------------------------------------------------------------------------------------


def _examples(item: verify.Item) -> str:
    return ", ".join(map(str, item.examples))


def _environment(report: verify.Report) -> str:
    env = report.environment
    return f"database {env.database} on {env.host}:{env.port} as {env.user}, PostgreSQL {env.server_version}"


def _flag_state(flag: Flag) -> str:
    if flag.released is not None:
        return f"{flag.name}: {flag.released.summary}; the sync is always on, for every customer"
    return (
        f"{flag.name}: {render.state_word(flag)}; everyone: {'yes' if flag.everyone else 'no'};"
        f" actors: {len(flag.actors)}; percentage: {flag.percentage} %"
    )


def verify_lines(report: verify.Report) -> list[str]:
    lines = [
        f"drift check at {when(report.checked_at)} on {_environment(report)}",
        f"  flag         {_flag_state(report.flag)}",
        f"  customers    {report.customers:,} ({report.in_rollout:,} in the rollout);"
        f" billing accounts {report.billing_accounts:,}; memberships {report.memberships:,}",
    ]
    for item in (*report.drift, report.skips):
        examples = f"  e.g. customers {_examples(item)}" if item.examples else ""
        lines.append(f"  {item.label + ':':<32}{count(item.rows, verify.UNITS[item.name])}{examples}")
    lines.append(_verdict(report))
    return lines


def _verdict(report: verify.Report) -> str:
    if report.clean:
        return "no drift: the billing tables are exactly the derived state for every customer in the rollout"
    return f"drift found ({count(report.drift_rows, 'row')}): run `sync-admin backfill`, then verify again"


def verify_markdown(report: verify.Report) -> str:
    counts = render.markdown_table(
        ("customers", "in rollout", "billing accounts", "memberships"),
        [
            (
                f"{report.customers:,}",
                f"{report.in_rollout:,}",
                f"{report.billing_accounts:,}",
                f"{report.memberships:,}",
            )
        ],
    )
    drift = render.markdown_table(
        ("drift class", "count", "example customer ids"),
        [(item.label, count(item.rows, verify.UNITS[item.name]), _examples(item)) for item in report.drift],
    )
    skips = report.skips
    return "\n".join(
        [
            f"#### QA report: `{report.flag.name}` sync",
            "",
            f"- **Checked at:** {when(report.checked_at)}",
            f"- **Environment:** {_environment(report)}",
            f"- **Flag:** {_flag_state(report.flag)}",
            "",
            counts,
            "",
            drift,
            "",
            f"**Sync skips** (customers in the rollout whose `zuora_account_id` is not blank and not an account):"
            f" {count(skips.rows, 'customer')}" + (f" (e.g. {_examples(skips)})" if skips.examples else ""),
            "",
            f"**Result:** {_verdict(report)}",
        ]
    )


# --- rollout check ------------------------------------------------------------------------------


def checklist_lines(checklist: rollout.Checklist) -> list[str]:
    lines = [f"rollout check of {checklist.flag} at {when(checklist.checked_at)}"]
    lines += [f"  {'PASS' if line.passed else 'FAIL'}  {line.name}: {line.evidence}" for line in checklist.lines]
    lines.append(_readiness(checklist))
    return lines


def _readiness(checklist: rollout.Checklist) -> str:
    if checklist.passed:
        return "ready to release the flag"
    return f"not ready to release the flag: {checklist.failed} of {len(checklist.lines)} checks failed"


def checklist_markdown(checklist: rollout.Checklist) -> str:
    lines = [
        f"#### Rollout check: `{checklist.flag}`",
        "",
        f"- **Checked at:** {when(checklist.checked_at)}",
        f"- **Environment:** {_environment(checklist.report)}",
        "",
    ]
    lines += [f"- [{'x' if line.passed else ' '}] **{line.name}**: {line.evidence}" for line in checklist.lines]
    lines += ["", f"**Result:** {_readiness(checklist)}"]
    return "\n".join(lines)
