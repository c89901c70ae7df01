"""What a customers trigger costs per row and per statement when it has nothing to do (the flag is off).

Design study of issue 7 (flag-off targets): each variant is one trigger on the customers table of a scratch
database (revision 0005's functions and flag, the flag off, its sync triggers dropped; 0005 is the
revision this study started from, whose v3 function is one of the variants), measured in interleaved
rounds against no trigger at all, two ways, both timed inside the server (no client, so much less noise
from a shared machine than pgbench):

* per statement: a DO loop of single-row UPDATEs changing zuora_account_id, each committed (CPU microseconds
  of the backend per statement above no trigger, read from /proc when the server is local: what a
  single-row write pays);
* per row: one UPDATE changing zuora_account_id of every row (microseconds per row above no trigger).

    SYNC_ADMIN_DATA_DIR=/tmp/sa-bench7 python bench/flag_cost.py [--rows 200000] [--statements 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

from sync_admin import db, migrate, server

DATABASE = "sync_bench_flag_cost"
TICKS = os.sysconf("SC_CLK_TCK")
CHANGED = "OLD.zuora_account_id IS DISTINCT FROM NEW.zuora_account_id"

FUNCTIONS = """
CREATE FUNCTION billing_sync.bench_return() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION billing_sync.bench_return_definer() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION billing_sync.bench_due_atomic() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
BEGIN ATOMIC
    SELECT coalesce((SELECT f.enabled FROM billing_sync.feature_flags f
                     WHERE f.name = 'account_data_persistence'), false);
END;
CREATE FUNCTION billing_sync.bench_due_set() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce((SELECT f.enabled FROM billing_sync.feature_flags f
                     WHERE f.name = 'account_data_persistence'), false);
END;
CREATE FUNCTION billing_sync.bench_due_plpgsql() RETURNS boolean LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN coalesce((SELECT f.enabled FROM billing_sync.feature_flags f
                     WHERE f.name = 'account_data_persistence'), false);
END $$;
"""

DUE = "billing_sync."


def row(when: str, function: str = "bench_return") -> str:
    return (
        f"AFTER UPDATE OF zuora_account_id ON public.customers FOR EACH ROW WHEN ({when})"
        f" EXECUTE FUNCTION billing_sync.{function}()"
    )


UNEVALUATED = (
    "pg_catalog.current_setting('billing_sync.x', true) IS DISTINCT FROM (NEW.cmin)::text"
    " AND pg_catalog.set_config('billing_sync.x', (NEW.cmin)::text, true) IS NOT NULL"
)

# name -> the CREATE TRIGGER text after the trigger's name, or None for no trigger.
VARIANTS: dict[str, str | None] = {
    "no trigger": None,
    "floor: WHEN changed AND a column test (no function anywhere)": row(f"{CHANGED} AND NEW.email = 'never'"),
    "WHEN changed AND a column test AND 3 functions never evaluated": row(
        f"{CHANGED} AND NEW.email = 'never' AND {UNEVALUATED}"
    ),
    "WHEN changed AND catalog lookup (to_regnamespace: schema mirror)": row(
        f"{CHANGED} AND pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL"
    ),
    "WHEN changed AND SQL flag function (definer, BEGIN ATOMIC)": row(f"{CHANGED} AND {DUE}bench_due_atomic()"),
    "WHEN changed AND SQL flag function (definer + SET)": row(f"{CHANGED} AND {DUE}bench_due_set()"),
    "WHEN changed AND PL/pgSQL flag function (definer + SET)": row(f"{CHANGED} AND {DUE}bench_due_plpgsql()"),
    "WHEN changed, PL/pgSQL function that returns": row(CHANGED),
    "WHEN changed, PL/pgSQL function that returns, SECURITY DEFINER + SET": row(CHANGED, "bench_return_definer"),
    "WHEN changed, 0005's v3 (calls flag_enabled_for)": row(CHANGED, "sync_customer_account"),
    "transition tables, WHEN changed AND a column test": (
        "AFTER UPDATE ON public.customers REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH ROW"
        f" WHEN ({CHANGED} AND NEW.email = 'never') EXECUTE FUNCTION billing_sync.bench_return()"
    ),
}

LOOP = """
DO $loop$
DECLARE
    started timestamptz := pg_catalog.clock_timestamp();
    k integer;
BEGIN
    FOR i IN 1..{statements} LOOP
        k := 1 + (pg_catalog.random() * ({rows} - 1))::integer;
        UPDATE public.customers SET zuora_account_id = 'S' || i WHERE id = k;
        COMMIT;
    END LOOP;
    PERFORM pg_catalog.set_config('bench.seconds',
        extract(epoch FROM pg_catalog.clock_timestamp() - started)::text, false);
END
$loop$
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


MEASURED_REVISION = "0005"  # the sync these measurements are about


def prepare(base: str, rows: int) -> str:
    url = server.recreate_database(base, DATABASE)
    migrate.upgrade(url, MEASURED_REVISION)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FUNCTIONS)
        conn.execute("ALTER DATABASE sync_bench_flag_cost SET synchronous_commit = off")
        for name in ("billing_sync_customer_insert", "billing_sync_customer_update", "billing_sync_customer_skips"):
            conn.execute(f"DROP TRIGGER {name} ON public.customers")
        conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'c' || g || '@example.com', 'A' || g FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("VACUUM (FREEZE, ANALYZE)")
    return url


def install(conn: psycopg.Connection, variant: str) -> None:
    conn.execute("DROP TRIGGER IF EXISTS bench_variant ON public.customers")
    definition = VARIANTS[variant]
    if definition is not None:
        conn.execute(f"CREATE TRIGGER bench_variant {definition}")


def bulk_seconds(conn: psycopg.Connection, flip: int) -> float:
    conn.execute("VACUUM public.customers")
    started = time.perf_counter()
    conn.execute("UPDATE public.customers SET zuora_account_id = %s || id", (f"X{flip}-",))
    return time.perf_counter() - started


def loop_seconds(conn: psycopg.Connection, rows: int, statements: int) -> float:
    """CPU seconds of the backend running the loop (from /proc, when the server is local), else wall seconds."""
    pid = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0]
    before = backend_cpu(pid)
    conn.execute(LOOP.format(rows=rows, statements=statements))
    after = backend_cpu(pid)
    if before is not None and after is not None:
        return after - before
    return float(conn.execute("SELECT pg_catalog.current_setting('bench.seconds')").fetchone()[0])


def backend_cpu(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--statements", type=int, default=20_000)
    parser.add_argument("--database-url")
    parser.add_argument("--only", action="append", default=[], help="variant name substrings")
    args = parser.parse_args()
    base = db.resolve_url(args.database_url) or server.start()
    url = prepare(base, args.rows)
    variants = [v for v in VARIANTS if v == "no trigger" or not args.only or any(o in v for o in args.only)]
    bulk: dict[str, list[float]] = {v: [] for v in variants}
    single: dict[str, list[float]] = {v: [] for v in variants}
    with psycopg.connect(url, autocommit=True) as conn:
        for number in range(args.rounds):
            order = variants if number % 2 == 0 else variants[::-1]
            for variant in order:
                install(conn, variant)
                bulk[variant].append(bulk_seconds(conn, number))
                single[variant].append(loop_seconds(conn, args.rows, args.statements))
            log(f"round {number + 1}/{args.rounds} done")
    report(variants, bulk, single, args.rows, args.statements)


def report(
    variants: list[str], bulk: dict[str, list[float]], single: dict[str, list[float]], rows: int, statements: int
) -> None:
    print(f"flag off; {rows:,} rows; {statements:,} single-row statements; difference to 'no trigger' per round,")
    print("median (min to max), microseconds")
    print("| variant | per single-row statement (each committed) | per row of one bulk UPDATE |")
    print("| --- | --- | --- |")
    for variant in variants:
        per_statement = _extra(single[variant], single["no trigger"], statements)
        per_row = _extra(bulk[variant], bulk["no trigger"], rows)
        print(f"| {variant} | {per_statement} | {per_row} |")


def _extra(values: list[float], baseline: list[float], count: int) -> str:
    extra = [(value - base) / count * 1e6 for value, base in zip(values, baseline, strict=True)]
    return f"{statistics.median(extra):.2f} ({min(extra):.2f} to {max(extra):.2f})"


if __name__ == "__main__":
    main()
