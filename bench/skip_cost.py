"""What recording skips costs a bulk statement: one UPDATE of 100,000 customers to bad values against
the same UPDATE to good values (issue 5: bad must not be slower than 2x good).

Runs on a fresh database of the embedded PostgreSQL (or --database-url's server), migrated to 0005 (the
revision whose v3 sync and skips trigger issue 5 measured; revision 0006 replaced them),
flag on for everyone, every customer a member of account A<id> (and accounts B<id> already exist).
Each round times, in a rotating order, from that same starting state:

    good       UPDATE customers SET zuora_account_id = 'B' || id                 (every row re-synced)
    bad        UPDATE customers SET zuora_account_id = 'not an account ' || id   (every row a skip, recorded)
    bad (v2)   the same bad UPDATE with the sync function v2, which records nothing
    good (v2)  the good UPDATE with v2: what v3 adds to the good path

Between timed statements (untimed): the state is restored, the events deleted and the tables
vacuumed, so every timed statement starts alike. Reported: the ratio of each mode to "good" per
round, median (min-max) over the interleaved rounds; ratios, not absolute times, carry across machines.

With --statement-trigger it also measures what the statement-level trigger that sends the
notification (billing_sync_customer_skips, entered by every INSERT and every UPDATE OF
zuora_account_id statement) adds to a single-row INSERT statement, with and without an account:
20,000 statements in a server-side loop, trigger enabled and disabled in interleaved rounds.

    python bench/skip_cost.py [--customers 100000] [--rounds 5] [--statement-trigger]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import psycopg

from sync_admin import db, migrate, resources, server

GOOD = "UPDATE public.customers SET zuora_account_id = 'B' || id"
BAD = "UPDATE public.customers SET zuora_account_id = 'not an account ' || id"
RESET = "UPDATE public.customers SET zuora_account_id = 'A' || id"
V2 = "functions/sync_customer_account_v2.sql"
V3 = "functions/sync_customer_account_v3.sql"


MEASURED_REVISION = "0005"  # the sync these measurements are about


def prepare(url: str, customers: int) -> None:
    migrate.upgrade(url, MEASURED_REVISION)
    with psycopg.connect(url, autocommit=True) as conn:
        # The accounts first, set-based: the sync then only joins existing accounts, as in the timed rounds.
        conn.execute(
            "INSERT INTO public.billing_accounts (zuora_account_id)"
            " SELECT prefix || g FROM generate_series(1, %s) g, unnest(ARRAY['A', 'B']) prefix",
            (customers,),
        )
        conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, everyone = true")
        conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'c' || g || '@example.com', 'B' || g FROM generate_series(1, %s) g",
            (customers,),
        )
        conn.execute(RESET)


def restore(conn: psycopg.Connection) -> None:
    """Back to the starting state, untimed: members of A<id>, no events, tables vacuumed."""
    conn.execute(RESET)
    conn.execute("DELETE FROM billing_sync.sync_events")
    conn.execute("VACUUM ANALYZE public.customers, public.billing_account_memberships, billing_sync.sync_events")


def install(conn: psycopg.Connection, relative: str) -> None:
    conn.execute(resources.read_sql(relative))


def timed(conn: psycopg.Connection, statement: str) -> float:
    start = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - start


def run_mode(conn: psycopg.Connection, mode: str) -> float:
    install(conn, V2 if mode.endswith("(v2)") else V3)
    restore(conn)
    seconds = timed(conn, GOOD if mode.startswith("good") else BAD)
    if mode == "bad":
        recorded = conn.execute("SELECT count(*) FROM billing_sync.sync_events").fetchone()[0]
        assert recorded > 0, "the bad update recorded no events"
    return seconds


def rounds(conn: psycopg.Connection, count: int, modes: list[str]) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    for index in range(count):
        order = modes[index % len(modes) :] + modes[: index % len(modes)]  # rotate: no mode always goes first
        for mode in order:
            seconds[mode].append(run_mode(conn, mode))
    install(conn, V3)
    return seconds


def report(seconds: dict[str, list[float]], describe: Callable[[str], str]) -> None:
    print("| mode | median seconds | time / good, median (min-max) |")
    print("| --- | --- | --- |")
    for mode, values in seconds.items():
        ratios = [value / good for value, good in zip(values, seconds["good"], strict=True)]
        print(
            f"| {describe(mode)} | {statistics.median(values):.2f} | {statistics.median(ratios):.2f}"
            f" ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


# Single-row INSERT statements run in the server (a DO loop), so that client round trips and commits,
# which dominate a real single-row write, do not drown the few microseconds measured.
STATEMENTS = 20_000
LOOPS = {
    "with an account": "INSERT INTO public.customers (email, zuora_account_id) VALUES ('p', 'A' || (i % 1000 + 1))",
    "without an account": "INSERT INTO public.customers (email) VALUES ('p')",
}


def loop_seconds(conn: psycopg.Connection, insert: str) -> float:
    return timed(conn, f"DO $$ BEGIN FOR i IN 1..{STATEMENTS} LOOP {insert}; END LOOP; END $$")


def statement_trigger_cost(conn: psycopg.Connection, rounds_count: int) -> None:
    """Microseconds per single-row INSERT statement with the skips trigger enabled and disabled."""
    for kind, insert in LOOPS.items():
        per_statement: dict[str, list[float]] = {"enabled": [], "disabled": []}
        for index in range(rounds_count):
            for state in ("enabled", "disabled") if index % 2 == 0 else ("disabled", "enabled"):
                verb = "ENABLE" if state == "enabled" else "DISABLE"
                conn.execute(f"ALTER TABLE public.customers {verb} TRIGGER billing_sync_customer_skips")
                per_statement[state].append(loop_seconds(conn, insert) / STATEMENTS * 1e6)
        conn.execute("ALTER TABLE public.customers ENABLE TRIGGER billing_sync_customer_skips")
        extra = [on - off for on, off in zip(per_statement["enabled"], per_statement["disabled"], strict=True)]
        print(
            f"single-row INSERT {kind}: {statistics.median(per_statement['disabled']):.1f} us per statement"
            f" without the statement trigger; it adds {statistics.median(extra):.1f} us"
            f" (min-max {min(extra):.1f} to {max(extra):.1f}) over {rounds_count} interleaved rounds"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="a server to create the benchmark database on")
    parser.add_argument("--statement-trigger", action="store_true", help="also time single-row INSERT statements")
    args = parser.parse_args()

    base = db.resolve_url(args.database_url) or server.start()
    url = server.recreate_database(base, "sync_admin_bench_skips")
    prepare(url, args.customers)
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        seconds = rounds(conn, args.rounds, ["good", "bad", "bad (v2)", "good (v2)"])
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, PostgreSQL {version}")
    print(f"{args.customers} customers, one UPDATE of all of them per timed statement, {args.rounds} rounds")
    notes = {
        "good": "good values (v3)",
        "bad": "bad values, recorded (v3)",
        "bad (v2)": "bad values, v2 (no record)",
        "good (v2)": "good values, v2",
    }
    report(seconds, lambda mode: notes[mode])
    if args.statement_trigger:
        with psycopg.connect(url, autocommit=True) as conn:
            statement_trigger_cost(conn, args.rounds)


if __name__ == "__main__":
    main()
