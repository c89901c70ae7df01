"""Where a synced row's time goes: the update trigger's function cut short after each of its steps (issue 11).

On a fresh database (on --database-url's server, else $DATABASE_URL's, else the embedded one) migrated to head,
with --customers customers on half as many accounts, each round times --rows single-row account changes (a random
customer to a random existing account, one transaction each, committed without waiting for the flush
(synchronous_commit off, as the suite), in a server-side loop: no round trips) with, in a rotating order:

    none     the update trigger disabled: the UPDATE alone
    entry    billing_sync.sync_customer_updated returns at once: the trigger's call
    lookup   ... after its first query (the row as it is now, its account, whether it is a member)
    delete   ... after removing the stale membership
    full     the function as installed: the membership inserted too

The cut versions are made from the installed definition (pg_get_functiondef) by a RETURN before a step, and the
installed one is put back at the end, whatever happens. Before each variant (untimed) the customers a cut version
left out of the derived state are repaired (billing_sync.sync_customers). Reported per variant: microseconds per
row, median (min-max) over the interleaved rounds, and what each step adds to the one before.

    python bench/row_cost.py [--database-url URL] [--customers 200000] [--rows 20000] [--rounds 5]
        [--database sync_bench_row_cost] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from sync_admin import db, migrate, server

DATABASE = "sync_bench_row_cost"
FUNCTION = "billing_sync.sync_customer_updated()"
TRIGGER = "billing_sync_customer_update"
# Each cut returns before the first line that starts with its marker (the steps of sync_customer_updated v3).
CUTS = {
    "entry": "    -- Under snapshot isolation, read nothing at all",
    "lookup": "    IF NOT coalesce(present, false) THEN",
    "delete": "    -- Looked up first (member, above;",
}
VARIANTS = ("none", "entry", "lookup", "delete", "full")
FILL = """
INSERT INTO public.customers (email, zuora_account_id)
SELECT 'c' || g || '@example.com', 'A' || ((g + 1) / 2) FROM generate_series(1, %(customers)s) g
"""
LOOP = """
DO $loop$
DECLARE
    customer bigint;
    account bigint;
BEGIN
    FOR i IN 1..{rows} LOOP
        customer := 1 + floor(random() * {customers})::bigint;
        account := 1 + floor(random() * {accounts})::bigint;
        UPDATE public.customers SET zuora_account_id = 'A' || account WHERE id = customer;
        COMMIT;
    END LOOP;
END
$loop$
"""


def cut(definition: str, marker: str) -> str:
    """DEFINITION returning NULL just before the line that starts with MARKER."""
    index = definition.find("\n" + marker)
    if index < 0:
        raise SystemExit(f"row_cost: {FUNCTION} has no line starting with {marker.strip()!r}; update CUTS")
    return definition[: index + 1] + "    RETURN NULL;\n" + definition[index + 1 :]


@contextmanager
def installed_function_restored(conn: psycopg.Connection) -> Iterator[str]:
    definition = conn.execute("SELECT pg_get_functiondef(%s::regprocedure)", (FUNCTION,)).fetchone()[0]
    try:
        yield definition
    finally:
        conn.execute(definition)
        conn.execute(sql.SQL("ALTER TABLE public.customers ENABLE TRIGGER {}").format(sql.Identifier(TRIGGER)))
        repair(conn)


def repair(conn: psycopg.Connection) -> None:
    """Every customer a cut version left out of the derived state brought back (no membership, or a stale one)."""
    while conn.execute("SELECT cardinality(billing_sync.drifted_customers(10000)) > 0").fetchone()[0]:
        conn.execute("SELECT billing_sync.sync_customers(billing_sync.drifted_customers(10000))")


def prepare(conn: psycopg.Connection, definition: str, variant: str) -> None:
    """VARIANT installed, from the derived state: a cut version leaves the customers it changed out of it, which
    would make the next variant's work differ."""
    repair(conn)
    toggle = "DISABLE" if variant == "none" else "ENABLE"
    conn.execute(sql.SQL(f"ALTER TABLE public.customers {toggle} TRIGGER {{}}").format(sql.Identifier(TRIGGER)))
    conn.execute(definition if variant in ("none", "full") else cut(definition, CUTS[variant]))
    conn.execute("VACUUM ANALYZE public.customers, public.billing_account_memberships")


def per_row(conn: psycopg.Connection, rows: int, customers: int) -> float:
    """Microseconds per row of ROWS single-row changes, measured by the server's clock."""
    started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    conn.execute(LOOP.format(rows=rows, customers=customers, accounts=max(1, customers // 2)))
    ended = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    return (ended - started).total_seconds() * 1e6 / rows


def build(base: str, name: str, customers: int) -> str:
    url = server.recreate_database(base, name)
    migrate.upgrade(url)  # an empty database goes straight to head (the release's guard has nothing to check)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL, {"customers": customers})
        conn.execute("VACUUM ANALYZE")
    return url


def report(results: dict[str, list[float]]) -> str:
    lines = ["| variant | us per row, median | min-max | the step adds |", "| --- | --- | --- | --- |"]
    before = None
    for variant in VARIANTS:
        values = results[variant]
        median = statistics.median(values)
        added = "-" if before is None else f"{median - before:+.1f}"
        lines.append(f"| {variant} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | {added} |")
        before = median
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", help="a server to create the database on (default: $DATABASE_URL, else the embedded one)"
    )
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=20_000, help="single-row changes per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", default=DATABASE, help="the name of the database this creates and drops")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if min(args.customers, args.rows, args.rounds) < 1:
        parser.error("--customers, --rows and --rounds must be at least 1")
    base = db.resolve_url(args.database_url) or server.start()
    results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    try:
        url = build(base, args.database, args.customers)
        with psycopg.connect(url, autocommit=True) as conn, installed_function_restored(conn) as definition:
            # As the suite (bench/suite/config.py): a commit's flush costs every variant the same and only adds noise.
            conn.execute("SET synchronous_commit = off")
            version = conn.execute("SHOW server_version").fetchone()[0]
            print(f"PostgreSQL {version}, {args.customers:,} customers, {args.rows:,} rows a variant", flush=True)
            for number in range(args.rounds):
                shift = number % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    prepare(conn, definition, variant)
                    results[variant].append(per_row(conn, args.rows, args.customers))
                print(f"  round {number + 1}: " + ", ".join(f"{v} {results[v][-1]:.1f}" for v in VARIANTS), flush=True)
    finally:
        if not args.keep:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.database)))
    print(report(results))


if __name__ == "__main__":
    main()
