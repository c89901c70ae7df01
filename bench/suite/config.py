"""The suite's parameters: sizes, rounds, durations, where to run and what to install."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
DESIGNS_DIR = BENCH_DIR / "designs"
RESULTS_DIR = BENCH_DIR / "results"
HEAD = "head"


@dataclass(frozen=True)
class Settings:
    """What one run measures and how; the defaults finish in under 10 minutes on 2 cores."""

    customers: int = 200_000  # customers in every database; two customers per billing account
    bulk_rows: int = 200_000  # rows of the bulk UPDATE and of the bulk INSERT ... SELECT
    new_accounts: int = 1_000  # accounts the bulk statements create (the others exist already)
    rounds: int = 10  # interleaved rounds of every pgbench comparison (short runs: noise hits both sides alike)
    bulk_rounds: int = 3  # interleaved rounds of every bulk comparison
    seconds: int = 2  # duration of one pgbench run
    transactions: int | None = None  # instead of --seconds: this many transactions per client (a quick smoke run)
    clients: int = 2
    jobs: int = 2
    protocol: str = "prepared"  # pgbench -M: simple, extended or prepared
    synchronous_commit: str = "off"  # commit flushes are the same for every variant and only add noise
    work_mem: str = "64MB"  # of the bulk sessions: at the default 4MB the set-based statements spill to disk
    design: str = HEAD  # "head" (the migrations as they are) or a folder of bench/designs
    database_url: str | None = None  # a server to create the databases on; None: the embedded server
    prefix: str = "sync_bench"  # database names start with it
    results: Path = RESULTS_DIR
    only: tuple[str, ...] = field(default_factory=tuple)  # scenario names (or "pgbench", "bulk"); empty: all
    keep: bool = False  # keep the databases afterwards (for a look with psql)

    @property
    def accounts(self) -> int:
        """Accounts per set (A: the customers' accounts at the start, B: the bulk statements' targets)."""
        return max(1, self.customers // 2)

    def __post_init__(self) -> None:
        if self.bulk_rows > self.customers:
            raise ValueError("--bulk-rows cannot exceed --customers (the bulk UPDATE changes existing customers)")
        if not 0 <= self.new_accounts <= (self.bulk_rows + 1) // 2:
            raise ValueError("--new-accounts must be between 0 and half of --bulk-rows")
        if self.protocol not in ("simple", "extended", "prepared"):
            raise ValueError("--protocol must be simple, extended or prepared")
        if self.synchronous_commit not in ("on", "off"):
            raise ValueError("--synchronous-commit must be on or off")
        if self.transactions is not None and self.transactions < 1:
            raise ValueError("--transactions must be at least 1")
        if min(self.customers, self.bulk_rows, self.rounds, self.bulk_rounds, self.seconds, self.clients) < 1:
            raise ValueError("sizes, rounds, seconds and clients must be at least 1")

    def wants(self, name: str, kind: str) -> bool:
        """Whether the scenario NAME of KIND ("pgbench" or "bulk") is selected by --only."""
        return not self.only or name in self.only or kind in self.only

    def design_dir(self) -> Path | None:
        if self.design == HEAD:
            return None
        path = Path(self.design)
        return path if path.is_dir() else DESIGNS_DIR / self.design
