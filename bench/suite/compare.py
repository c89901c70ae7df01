"""`python -m bench.suite.compare [DESIGN ...]`: one markdown table of the designs' results side by side.

Reads bench/results/<design>/results.json (written by `python -m bench --design DESIGN`), with the scenarios
of bench/results/<design>_bulk/results.json in their place if there is one (a later `--only bulk` run with
`--results bench/results/<design>_bulk`); prints each scenario's median ratio per design, with its target,
and marks the ratios that meet it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.suite.config import RESULTS_DIR
from bench.suite.workloads import SCENARIOS


def load(design: str) -> dict[str, Any] | None:
    """The design's results; the scenarios of a later run into <design>_bulk (--only bulk) replace its own."""
    document = _read(RESULTS_DIR / design / "results.json")
    rerun = _read(RESULTS_DIR / f"{design}_bulk" / "results.json")
    if document is None or rerun is None:
        return document or rerun
    replaced = {scenario["name"]: scenario for scenario in rerun["scenarios"]}
    document["scenarios"] = [replaced.get(s["name"], s) for s in document["scenarios"]]
    document["many_new_accounts"] = rerun.get("many_new_accounts") or document.get("many_new_accounts")
    return document


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def cell(document: dict[str, Any] | None, name: str) -> str:
    scenario = next((s for s in (document or {}).get("scenarios", []) if s["name"] == name), None)
    if scenario is None or scenario["median"] is None:
        return "-"
    mark = {True: " ✓", False: " ✗", None: ""}[scenario["met"]]
    return f"{scenario['median']:.3f}{mark}"


def table(designs: list[str]) -> str:
    documents = {design: load(design) for design in designs}
    lines = [
        "| scenario | target | " + " | ".join(f"`{design}`" for design in designs) + " |",
        "| --- | --- |" + " --- |" * len(designs),
    ]
    for scenario in SCENARIOS:
        cells = " | ".join(cell(documents[design], scenario.name) for design in designs)
        lines.append(f"| {scenario.name} | {scenario.target_text} | {cells} |")
    accounts = []
    for design in designs:
        check = (documents[design] or {}).get("many_new_accounts") or {}
        accounts.append("-" if not check else ("ok" if check.get("ok") else "fails"))
    lines.append("| many_new_accounts (one statement, 20,000 new accounts) | succeeds | " + " | ".join(accounts) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    found = sorted(path.name for path in RESULTS_DIR.iterdir() if path.is_dir() and not path.name.endswith("_bulk"))
    designs = argv or found
    print(table(designs), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
