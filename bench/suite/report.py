"""The results: a markdown table, a JSON file and a PNG chart of the median ratios against their targets."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.suite.runner import BulkFacts, Measurement


@dataclass(frozen=True)
class Row:
    """One line of the table: a scenario's median ratio, its spread and the verdict."""

    name: str
    title: str
    median: float | None
    low: float | None
    high: float | None
    rounds: int
    cpu_median: float | None  # the same ratio from CPU time per transaction (embedded server only)
    cpu_low: float | None
    cpu_high: float | None
    target: str
    met: bool | None
    errors: list[str]


def summarize(measurement: Measurement) -> Row:
    ratios, cpu = measurement.ratios, measurement.cpu_ratios
    median = statistics.median(ratios) if ratios else None
    scenario = measurement.scenario
    return Row(
        name=scenario.name,
        title=scenario.title,
        median=median,
        low=min(ratios) if ratios else None,
        high=max(ratios) if ratios else None,
        rounds=len(ratios),
        cpu_median=statistics.median(cpu) if cpu else None,
        cpu_low=min(cpu) if cpu else None,
        cpu_high=max(cpu) if cpu else None,
        target=scenario.target_text,
        met=scenario.met(median),
        errors=measurement.errors,
    )


def verdict(row: Row) -> str:
    if row.median is None:
        return "failed"
    return {True: "yes", False: "**no**", None: "-"}[row.met]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _spread(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{low:.2f}-{high:.2f}"


def markdown(rows: list[Row], context: dict[str, Any], facts: BulkFacts) -> str:
    lines = [
        f"Design: `{context['design']}`. {context['machine']}; {context['server']}.",
        f"{context['sizes']}",
        "",
        "| scenario | median ratio | min-max | target | met? | from CPU time: median (min-max) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cpu = "-" if row.cpu_low is None else f"{_number(row.cpu_median)} ({row.cpu_low:.2f}-{row.cpu_high:.2f})"
        median = "-" if row.median is None else f"{row.median:.3f}"  # three places: 1.4996 is not 1.5
        lines.append(
            f"| {row.title} | {median} | {_spread(row.low, row.high)} | {row.target} | {verdict(row)} | {cpu} |"
        )
    lines += ["", *fact_lines(facts), *error_lines(rows)]
    return "\n".join(lines).rstrip() + "\n"


def fact_lines(facts: BulkFacts) -> list[str]:
    lines = []
    for work, values in sorted(facts.xids.items()):
        rounds = ", ".join(str(value) for value in values)
        lines.append(
            f"- transaction ids consumed by one `{work}` statement (txid_current() before and after, in transactions"
            f" of their own): {min(values)} (per round: {rounds}; more than the least is another session's)"
        )
    check = facts.many_accounts
    if check:
        created = f"succeeded ({check['accounts_created']} accounts created)"
        outcome = created if check["ok"] else f"FAILED: {check['error']}"
        lines.append(f"- one INSERT of {check['rows']} customers on as many new accounts, flag on: {outcome}")
    return lines


def error_lines(rows: list[Row]) -> list[str]:
    return [f"- {row.name}: {len(row.errors)} failed round(s): {row.errors[0]}" for row in rows if row.errors]


def to_json(rows: list[Row], measurements: list[Measurement], context: dict[str, Any], facts: BulkFacts) -> str:
    by_name = {m.scenario.name: m for m in measurements}
    scenarios = []
    for row in rows:
        measurement = by_name[row.name]
        scenario = measurement.scenario
        scenarios.append(
            {
                "name": row.name,
                "title": row.title,
                "kind": scenario.kind,
                "unit": "TPS" if scenario.kind == "pgbench" else "seconds",
                "a": {
                    "label": scenario.a.label,
                    "values": [x.value for x in measurement.a],
                    "cpu_seconds_per_transaction": [x.cpu for x in measurement.a],
                },
                "b": {
                    "label": scenario.b.label,
                    "values": [x.value for x in measurement.b],
                    "cpu_seconds_per_transaction": [x.cpu for x in measurement.b],
                },
                "ratios": measurement.ratios,
                "cpu_ratios": measurement.cpu_ratios,
                "median": row.median,
                "min": row.low,
                "max": row.high,
                "cpu_median": row.cpu_median,
                "target": scenario.target,
                "target_direction": None if scenario.target is None else (">=" if scenario.at_least else "<="),
                "met": row.met,
                "errors": row.errors,
            }
        )
    document = {
        **context,
        "scenarios": scenarios,
        "xids": facts.xids,
        "many_new_accounts": facts.many_accounts,
    }
    return json.dumps(document, indent=2) + "\n"


def chart(rows: list[Row], path: Path, title: str) -> bool:
    """Horizontal bars: each scenario's median ratio (min-max whiskers) and its target as a black tick.

    False (and no file) without matplotlib: pip install -e '.[bench]'.
    """
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.median is not None]
    figure, axes = plt.subplots(figsize=(10, 0.6 * len(shown) + 1.6))
    positions = list(range(len(shown)))[::-1]
    colours = [{True: "tab:green", False: "tab:red", None: "tab:gray"}[row.met] for row in shown]
    medians = [row.median or 0.0 for row in shown]
    whiskers = [[m - (row.low or m) for m, row in zip(medians, shown, strict=True)],
                [(row.high or m) - m for m, row in zip(medians, shown, strict=True)]]  # fmt: skip
    axes.barh(positions, medians, xerr=whiskers, color=colours, alpha=0.8, capsize=3)
    for position, row in zip(positions, shown, strict=True):
        if row.target != "-":
            value = float(row.target.split()[1])
            axes.plot([value, value], [position - 0.4, position + 0.4], color="black", linewidth=2)
        axes.text(0.02, position, f"{row.median:.2f} (target {row.target})", va="center", fontsize=8)
    axes.set_yticks(positions, [row.name for row in shown], fontsize=8)
    axes.set_xlabel("median ratio (whiskers: min-max over rounds; black tick: target)")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(
    directory: Path, rows: list[Row], measurements: list[Measurement], context: dict[str, Any], facts: BulkFacts
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "results.md", directory / "results.json", directory / "ratios.png"]
    paths[0].write_text(markdown(rows, context, facts), encoding="utf-8")
    paths[1].write_text(to_json(rows, measurements, context, facts), encoding="utf-8")
    if not chart(rows, paths[2], f"billing-sync benchmark, design {context['design']} ({context['machine']})"):
        print("no chart: matplotlib is not installed (pip install -e '.[bench]')", file=sys.stderr)
        paths.pop()
    return paths
