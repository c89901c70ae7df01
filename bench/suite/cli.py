"""`python -m bench [options]`: build the databases, run the scenarios, write the results."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.suite import databases, report, runner
from bench.suite.config import HEAD, RESULTS_DIR, Settings
from bench.suite.databases import Server
from bench.suite.runner import BulkFacts, Measurement, log
from bench.suite.workloads import SCENARIOS, Scenario

DEFAULTS = Settings()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="billing-sync benchmark suite (issue 7)")
    p.add_argument("--database-url", help="a server to create the databases on (default: the embedded server)")
    p.add_argument("--design", default=HEAD, help="head, or a folder of bench/designs to install over head")
    p.add_argument("--customers", type=int, default=DEFAULTS.customers)
    p.add_argument("--bulk-rows", type=int, default=DEFAULTS.bulk_rows)
    p.add_argument("--new-accounts", type=int, default=DEFAULTS.new_accounts,
                   help="accounts the bulk statements create (the others exist)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=DEFAULTS.rounds, help="interleaved rounds of each pgbench pair")
    p.add_argument("--bulk-rounds", type=int, default=DEFAULTS.bulk_rounds, help="interleaved rounds of each bulk pair")
    p.add_argument("--seconds", type=int, default=DEFAULTS.seconds, help="duration of one pgbench run")
    p.add_argument(
        "--transactions", type=int, default=None, help="instead of --seconds: transactions a client, one pgbench run"
    )
    p.add_argument("--clients", type=int, default=DEFAULTS.clients)
    p.add_argument("--jobs", type=int, default=DEFAULTS.jobs)
    p.add_argument("--protocol", default=DEFAULTS.protocol, choices=("simple", "extended", "prepared"))
    p.add_argument("--synchronous-commit", default=DEFAULTS.synchronous_commit, choices=("on", "off"))
    p.add_argument("--work-mem", default=DEFAULTS.work_mem, help="work_mem of the bulk sessions (both sides)")
    p.add_argument("--prefix", default=DEFAULTS.prefix, help="prefix of the database names")
    p.add_argument("--results", type=Path, help="results folder (default: bench/results/<design>)")
    p.add_argument("--only", action="append", default=[], help="a scenario name, 'pgbench' or 'bulk' (repeatable)")
    p.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    design_name = Path(args.design).name if args.design != HEAD else HEAD
    return Settings(
        customers=args.customers,
        bulk_rows=args.bulk_rows,
        new_accounts=args.new_accounts,
        rounds=args.rounds,
        bulk_rounds=args.bulk_rounds,
        seconds=args.seconds,
        transactions=args.transactions,
        clients=args.clients,
        jobs=args.jobs,
        protocol=args.protocol,
        synchronous_commit=args.synchronous_commit,
        work_mem=args.work_mem,
        design=args.design,
        database_url=args.database_url,
        prefix=args.prefix,
        results=args.results or (RESULTS_DIR / design_name),
        only=tuple(args.only),
        keep=args.keep,
    )


def selected(settings: Settings, kind: str) -> list[Scenario]:
    """The scenarios of KIND that --only asks for; the released ones only for head (a design is not released)."""
    return [
        s
        for s in SCENARIOS
        if s.kind == kind
        and settings.wants(s.name, kind)
        and (settings.design == HEAD or "released" not in (s.a.database, s.b.database))
    ]


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{platform.system()} {platform.machine()}, {cores} cores, load average {load}"


def context(settings: Settings, srv: Server, started: float) -> dict[str, Any]:
    with psycopg.connect(srv.url("tpl_sync"), autocommit=True) as conn:
        facts = databases.server_facts(conn)
    version = facts["postgresql"].split(" on ")[0]
    return {
        "design": Path(settings.design).name,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "server": f"{version}, shared_buffers {facts['shared_buffers']}, synchronous_commit "
        f"{settings.synchronous_commit}, fsync {facts['fsync']}",
        "server_settings": facts,
        "sizes": (
            f"{settings.customers:,} customers; pgbench {settings.rounds} rounds x {pgbench_length(settings)}, "
            f"{settings.clients} clients, {settings.jobs} jobs, -M {settings.protocol}; bulk {settings.bulk_rows:,} "
            f"rows ({settings.new_accounts:,} new accounts), {settings.bulk_rounds} rounds,"
            f" work_mem {settings.work_mem}"
        ),
        "settings": {key: str(value) for key, value in vars(settings).items()},
    }


def pgbench_length(settings: Settings) -> str:
    if settings.transactions is None:
        return f"{settings.seconds} s"
    return f"{settings.transactions:,} transactions a client"


def measure(settings: Settings, srv: Server) -> tuple[list[Measurement], BulkFacts]:
    facts = BulkFacts()
    measurements: list[Measurement] = []
    pgbench_scenarios = selected(settings, "pgbench")
    if pgbench_scenarios:
        measurements += runner.pgbench_rounds(pgbench_scenarios, srv, settings)
        for role in runner.PGBENCH_DATABASES:  # their autovacuum would draw transaction ids beside the bulk ones
            srv.drop(role)
    bulk_scenarios = selected(settings, "bulk")
    if bulk_scenarios:
        measurements += runner.bulk_rounds(bulk_scenarios, srv, settings, facts)
    if settings.wants("many_new_accounts", "bulk"):
        facts.many_accounts = runner.many_accounts_check(srv, settings)
    return measurements, facts


# Every database the suite creates, by role: the pgbench clones, the bulk clone and the templates.
ROLES = (*runner.PGBENCH_DATABASES, "bulk", "tpl_released", "tpl_none", "tpl_sync")


def cleanup(srv: Server) -> None:
    for role in ROLES:
        srv.drop(role)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        parser().error(str(exc))
    started = time.perf_counter()
    srv = Server(settings)
    log(f"building the databases ({settings.customers:,} customers, design {settings.design})")
    try:
        databases.build_templates(srv, settings)
        measurements, facts = measure(settings, srv)
        rows = [report.summarize(m) for m in measurements]
        paths = report.write(settings.results, rows, measurements, context(settings, srv, started), facts)
    finally:
        if not settings.keep:
            cleanup(srv)
    print(paths[0].read_text(encoding="utf-8"))
    log("written: " + ", ".join(str(path) for path in paths))
    return 0
