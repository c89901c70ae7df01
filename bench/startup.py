"""Start-up time of sync-admin (issue 12): `sync-admin --help` and `sync-admin flag status` on a warm embedded
server, the median of interleaved runs (targets: under 0.3 s and under 0.6 s).

    python bench/startup.py [--runs 9] [--tree DIR ...]

Each --tree (default: this checkout) is run with its own sync_admin first on sys.path, so two checkouts can be
compared side by side in one run (e.g. `git worktree add /tmp/before <commit>`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"--help": ["--help"], "flag status": ["flag", "status", "account_data_persistence"]}
TARGETS = {"--help": 0.3, "flag status": 0.6}


def timed(tree: Path, args: list[str]) -> float:
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from sync_admin.cli import main; main()"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--tree", type=Path, action="append")
    options = parser.parse_args()
    trees = options.tree or [Path(__file__).resolve().parents[1]]
    timed(trees[0], COMMANDS["flag status"])  # starts the embedded server, warms the caches
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(options.runs):
        for name, args in COMMANDS.items():
            for tree in trees:
                seconds.setdefault((str(tree), name), []).append(timed(tree, args))
    print("| tree | command | median s | min-max s | target |")
    print("| --- | --- | --- | --- | --- |")
    for (tree, name), values in seconds.items():
        print(
            f"| {tree} | `sync-admin {name}` | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f}"
            f" | < {TARGETS[name]} s |"
        )


if __name__ == "__main__":
    main()
