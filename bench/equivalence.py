"""Does a trigger design of bench/designs do what head does? The same writes on two fresh databases.

For each script of bench/designs/equivalence (single-row, multi-row, gate, skip, no-op and nested writes),
one database migrated to head and one with the design installed over it run it in one session each; then
compared: the memberships (customer, account value), the billing accounts, the skip events (customer,
operation, reason) and the number of skip notifications the session received.

    SYNC_ADMIN_DATA_DIR=/tmp/sa-bench7 python bench/equivalence.py mixed_stmt [lean ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from bench.suite import databases
from bench.suite.config import DESIGNS_DIR
from sync_admin import db, migrate, release, server

SCRIPTS_DIR = DESIGNS_DIR / "equivalence"
SCRIPTS = ("writes.sql", "nested.sql")


def outcome(base: str, name: str, design: Path | None, script: Path) -> tuple[list[tuple[object, ...]], int]:
    """The state hashes after SCRIPT, and the number of skip notifications it received."""
    url = server.recreate_database(base, name)
    try:
        migrate.upgrade(url, release.PRE_RELEASE_REVISION)
        with psycopg.connect(url, autocommit=True) as conn:
            databases.install_design(conn, design)
            received: list[str] = []
            conn.add_notify_handler(lambda notify: received.append(notify.payload))
            conn.execute("LISTEN billing_sync_skips")
            conn.execute(script.read_text(encoding="utf-8"))
            conn.execute("SELECT 1")  # delivers what the script's last commit sent
            state = [conn.execute(query).fetchone() for query in state_queries()]
        return state, len(received)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def state_queries() -> list[str]:
    text = (SCRIPTS_DIR / "state.sql").read_text(encoding="utf-8")
    return [part.strip() for part in text.split(";") if part.strip() and not part.strip().startswith("--")]


def compare(base: str, design: str) -> bool:
    same = True
    for script in SCRIPTS:
        path = SCRIPTS_DIR / script
        expected = outcome(base, "sync_bench_equivalence_head", None, path)
        actual = outcome(base, "sync_bench_equivalence_design", DESIGNS_DIR / design, path)
        verdict = "same" if actual == expected else "DIFFERENT"
        same = same and actual == expected
        print(f"{design} {script}: {verdict} (head {expected[1]} notifications, design {actual[1]})")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("designs", nargs="+")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    base = db.resolve_url(args.database_url) or server.start()
    results = [compare(base, design) for design in args.designs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
