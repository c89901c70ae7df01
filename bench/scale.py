"""Backfill, verify and the repair at 1M and 10M customers; the backfill when most customers bring a new account.

The issue 11 scale targets, each on databases this script builds (migrated to head, customers filled set-based
while the flag is off, then the flag on for everyone) and drops at the end (unless --keep):

1. Scale. One database per size (--customers), customers in the shape of bench/backfill_bench.py (half of them
   on shared accounts, 4 per account, the others on their own, 2 % without one). Each round, from empty
   billing tables: `sync-admin backfill` (the CLI process), `sync-admin verify`, then the repair: the
   memberships of 1 % of the customers (--repair-percent) deleted and those customers queued in
   billing_sync.sync_repairs (reason backfill_left), drained by `sync-admin heal --once`, then `verify` again.
   Per command: wall time per customer (per queued customer for heal), peak RSS of the sync-admin process
   (/usr/bin/time -v), peak private memory (RssAnon) of its server backend, sampled from /proc when the
   server runs on this machine, and the temporary files the database wrote (pg_stat_database temp_bytes).
   The sizes' rounds are interleaved (1M, 10M, 1M, ...). Targets: time per customer at the largest size
   within 1.2x of the smallest; memory flat.
2. New accounts. --shared-customers customers on half as many accounts (customers 2k-1 and 2k share account
   A<k>; none exists before): the backfill against the same work as one set-based statement
   (backfill_bench.ONE_STATEMENT), in interleaved rounds (A B, B A, ...); median (min-max) of the per-round
   ratios. Target: <= 1.5. Issue 11 asks for it on PostgreSQL 15's default configuration: pass its URL.

3. Heal alone (--only heal, not part of a default run): the repair of 1 and 2 at each size, --heal-rounds
   interleaved rounds, nothing else; with --reuse on the databases a `--only scale --keep` run left.

Writes markdown tables to stdout and results.md, results.json (every round) and scale.png to --results.

    python bench/scale.py --database-url URL [--customers 1000000,10000000] [--rounds 3,1] [--repair-percent 1]
        [--shared-customers 1000000] [--shared-rounds 5] [--only scale|shared|heal] [--heal-rounds 5] [--keep] [--reuse]
        [--results bench/results/scale] [--prefix sync_scale]
    python bench/scale.py --redraw [--results DIR]   # tables and chart again from DIR/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from bench import backfill_bench
from bench.backfill_bench import SYNC_ADMIN, drift_rows, one_statement, reset, timed
from sync_admin import db, migrate, release, server

RESULTS = Path(__file__).resolve().parent / "results" / "scale"
FLAG_ON = (
    "UPDATE billing_sync.feature_flags SET enabled = true, everyone = true WHERE name = 'account_data_persistence'"
)
# backfill_bench's customers, filled in chunks (one statement per chunk: the insert trigger's transition table
# stays small while the flag is off).
SUITE_SHAPE = backfill_bench.CUSTOMERS_SQL.replace("generate_series(1, %s)", "generate_series(%s::int, %s::int)")
assert SUITE_SHAPE != backfill_bench.CUSTOMERS_SQL
# Two customers per account, every account new to the billing tables.
SHARED_SHAPE = """
INSERT INTO public.customers (email, zuora_account_id)
SELECT 'c' || g || '@example.com', 'A' || ((g + 1) / 2)
FROM generate_series(%s::int, %s::int) g
"""
FILL_CHUNK = 1_000_000
TIME_RE = {
    "rss_kib": re.compile(r"Maximum resident set size \(kbytes\): (\d+)"),
    "exit": re.compile(r"Exit status: (\d+)"),
}


@dataclass
class Measured:
    """One sync-admin command, as a process: wall seconds, peak RSS, its backend's peak private memory, temp files."""

    command: str
    seconds: float
    rss_mib: float
    backend_anon_mib: float | None
    temp_files: int
    temp_mib: float
    load: float
    units: int  # customers (backfill, verify) or queued customers (heal)
    output: dict = field(default_factory=dict)

    @property
    def us_per_unit(self) -> float:
        return self.seconds / self.units * 1e6


class BackendSampler:
    """The peak RssAnon (private memory: work_mem, caches; not shared buffers) of the client backends of one
    database other than our own, sampled every 0.1 s from /proc. None when /proc has no such processes (the
    server runs elsewhere)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peak_kib: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak_kib is None else self.peak_kib / 1024

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchall()
                for (pid,) in pids:
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    match = re.search(r"^RssAnon:\s+(\d+) kB", status, re.M)
                    if match:
                        self.peak_kib = max(self.peak_kib or 0, int(match.group(1)))
                self.stop.wait(0.1)


def temp_usage(url: str) -> tuple[int, int]:
    """(temp_files, temp_bytes) of the database so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT temp_files, temp_bytes FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure(url: str, label: str, units: int, *args: str) -> Measured:
    """Run `sync-admin --database-url URL ARGS` under /usr/bin/time -v; its exit status must be 0."""
    files_before, bytes_before = temp_usage(url)
    load = os.getloadavg()[0]
    with BackendSampler(url) as sampler:
        started = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-v", *SYNC_ADMIN, "--database-url", url, *args], capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
    rss, status = (TIME_RE[key].search(result.stderr) for key in ("rss_kib", "exit"))
    assert rss and status, result.stderr[-2000:]
    if int(status.group(1)) != 0:
        raise SystemExit(f"{label} exited {status.group(1)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    time.sleep(0.5)  # the command's backend reports its statistics when it exits
    files_after, bytes_after = temp_usage(url)
    output = json.loads(result.stdout) if "--format" in args else {"stdout": result.stdout.strip()[-500:]}
    return Measured(
        label,
        seconds,
        int(rss.group(1)) / 1024,
        sampler.peak_mib,
        files_after - files_before,
        (bytes_after - bytes_before) / 2**20,
        load,
        units,
        output,
    )


def build(base: str, name: str, customers: int, shape: str, reuse: bool) -> str:
    """A database migrated to head with CUSTOMERS customers filled by SHAPE while the flag is off, then the
    flag on for everyone. With REUSE an existing database built with the same parameters is kept."""
    marker = f"bench/scale.py: {customers} customers, {'shared' if shape == SHARED_SHAPE else 'suite'} shape"
    url = db.with_database(base, name)
    if reuse:
        with psycopg.connect(base, autocommit=True) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        if row and row[0] == marker:
            print(f"  {name}: reused", flush=True)
            return url
    server.recreate_database(base, name)
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(1, customers + 1, FILL_CHUNK):
            conn.execute(shape, (first, min(customers, first + FILL_CHUNK - 1)))
        conn.execute("VACUUM ANALYZE public.customers")
        conn.execute(FLAG_ON)
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(marker)))
    print(f"  {name}: {customers:,} customers filled in {time.perf_counter() - started:.0f} s", flush=True)
    return url


def prepare(url: str) -> None:
    """Before a timed command: tables analysed (autovacuum may lag behind a bulk change) and a checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE public.billing_accounts, public.billing_account_memberships")
        conn.execute("VACUUM ANALYZE billing_sync.sync_repairs")
        conn.execute("CHECKPOINT")


def damage(url: str, percent: float) -> int:
    """Delete the memberships of PERCENT % of the customers (every Nth id, all with an account) and queue them
    for the repair as a backfill that found them held would; how many were queued."""
    step = max(1, round(100 / percent))
    with psycopg.connect(url, autocommit=True) as conn:
        picked = "SELECT c.id FROM public.customers c WHERE c.id %% %s = 7 AND c.zuora_account_id IS NOT NULL"
        conn.execute(f"DELETE FROM public.billing_account_memberships m WHERE m.customer_id IN ({picked})", (step,))
        conn.execute(
            "INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)"
            f" SELECT p.id, 'backfill_left', txid_current() FROM ({picked}) p ORDER BY p.id",
            (step,),
        )
        row = conn.execute("SELECT count(*) FROM billing_sync.sync_repairs").fetchone()
    assert row is not None
    return int(row[0])


def verify_clean(measured: Measured) -> None:
    drift = sum(item["count"] for item in measured.output["drift"].values())
    assert drift == 0, f"{measured.command}: drift {measured.output['drift']}"


def heal_round(url: str, percent: float) -> list[Measured]:
    """The repair alone: PERCENT % of the customers damaged and queued, `heal --once`, then the same process on an
    empty queue (its start-up, subtracted from the first)."""
    queued = damage(url, percent)
    prepare(url)
    return [measure(url, "heal", queued, "heal", "--once"), measure(url, "heal_empty", 1, "heal", "--once")]


def scale_round(url: str, customers: int, percent: float) -> list[Measured]:
    reset(url)
    prepare(url)
    backfilled = measure(url, "backfill", customers, "backfill", "--format", "json")
    prepare(url)
    verified = measure(url, "verify", customers, "verify", "--format", "json")
    verify_clean(verified)
    # The empty-queue run is the interpreter, imports, connection, one pass. At 1M customers and 1 % queued it is
    # half of the wall time; the net time per queued customer leaves it out.
    healed, idle = heal_round(url, percent)
    prepare(url)
    verified_again = measure(url, "verify", customers, "verify", "--format", "json")
    verify_clean(verified_again)
    return [backfilled, verified, healed, idle, verified_again]


def interleave(rounds: dict[int, int]) -> list[int]:
    """Each size's rounds spread over the run (1M, 10M, 1M rather than 1M, 1M, 10M)."""
    slots = [((number + 0.5) / count, size) for size, count in rounds.items() for number in range(count)]
    return [size for _, size in sorted(slots)]


def run_scale(base: str, args: argparse.Namespace, results: dict) -> None:
    sizes = [int(size) for size in args.customers.split(",")]
    counts = [int(count) for count in args.rounds.split(",")]
    rounds = {size: counts[min(number, len(counts) - 1)] for number, size in enumerate(sizes)}
    print(f"\n## 1. scale: {', '.join(f'{size:,} customers x {rounds[size]}' for size in sizes)} (suite shape)")
    urls = {size: build(base, f"{args.prefix}_{size}", size, SUITE_SHAPE, args.reuse) for size in sizes}
    runs: dict[int, list[list[Measured]]] = {size: [] for size in sizes}
    for number, size in enumerate(interleave(rounds), start=1):
        measured = scale_round(urls[size], size, args.repair_percent)
        runs[size].append(measured)
        print(
            f"  round {number}: {size:,} customers: "
            + ", ".join(
                f"{m.command} {m.seconds:.1f} s" + (f" ({m.us_per_unit:.1f} us/unit)" if m.units > 1 else "")
                for m in measured
            )
            + f"; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    results["scale"] = {str(size): [[asdict(m) for m in measured] for measured in runs[size]] for size in sizes}
    emit(results, scale_tables(results))


HEAL_LINE = re.compile(r"repaired (\d+) customers in ([0-9.]+)s")


def per_unit(round_: list[dict], command: str) -> list[float]:
    """Microseconds per unit of COMMAND in one round; heal net of the same process on an empty queue."""
    rows = [m for m in round_ if m["command"] == command]
    if command != "heal":
        return [m["seconds"] / m["units"] * 1e6 for m in rows]
    idle = [m["seconds"] for m in round_ if m["command"] == "heal_empty"]
    if idle:
        return [(m["seconds"] - idle[0]) / m["units"] * 1e6 for m in rows]
    # Runs before the empty-queue baseline existed: the drain time heal prints (0.1 s resolution).
    return [float(HEAL_LINE.search(m["output"]["stdout"]).group(2)) / m["units"] * 1e6 for m in rows]


def scale_tables(results: dict) -> str:
    sizes = sorted(int(size) for size in results["scale"])
    rounds = {size: results["scale"][str(size)] for size in sizes}
    lines = [
        "| command | customers | rounds | us per customer: median (min-max) | process wall, us per customer |"
        " peak RSS MiB, sync-admin | peak RssAnon MiB, its backend | temp files MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary: dict[str, dict[int, float]] = {}
    for command in ("backfill", "verify", "heal"):
        for size in sizes:
            samples = [m for round_ in rounds[size] for m in round_ if m["command"] == command]
            per = [value for round_ in rounds[size] for value in per_unit(round_, command)]
            wall = [m["seconds"] / m["units"] * 1e6 for m in samples]
            summary.setdefault(command, {})[size] = statistics.median(per)
            anon = [m["backend_anon_mib"] for m in samples if m["backend_anon_mib"] is not None]
            name = "heal (per queued customer, net of an empty-queue run)" if command == "heal" else command
            lines.append(
                f"| {name} | {size:,} | {len(samples)} | {statistics.median(per):.1f} ({min(per):.1f}-{max(per):.1f})"
                f" | {statistics.median(wall):.1f} | {max(m['rss_mib'] for m in samples):.0f} |"
                f" {f'{max(anon):.0f}' if anon else 'n/a'} | {max(m['temp_mib'] for m in samples):.0f} |"
            )
    smallest, largest = min(sizes), max(sizes)
    lines.append("")
    for command, medians in summary.items():
        ratio = medians[largest] / medians[smallest] if medians[smallest] else float("nan")
        verdict = "meets" if ratio <= 1.2 else "MISSES"
        lines.append(
            f"{command}: time per customer at {largest:,} / at {smallest:,}: {ratio:.2f} ({verdict} the 1.2 target)"
        )
        results.setdefault("scale_ratios", {})[command] = ratio
    return "\n".join(lines)


def run_heal(base: str, args: argparse.Namespace, results: dict) -> None:
    """The repair alone, --heal-rounds interleaved rounds per size (1M, 10M, 10M, 1M, ...): its figure at 1M is about
    a second, so one round of the scale part says little. Databases a `--keep` scale run left are used with --reuse;
    a new one is backfilled first (untimed)."""
    sizes = [int(size) for size in args.customers.split(",")]
    print(f"\n## 3. heal alone: {', '.join(f'{size:,}' for size in sizes)} customers, {args.heal_rounds} rounds")
    urls = {size: build(base, f"{args.prefix}_{size}", size, SUITE_SHAPE, args.reuse) for size in sizes}
    for url in urls.values():
        with psycopg.connect(url) as conn:
            synced = conn.execute("SELECT EXISTS (SELECT 1 FROM public.billing_account_memberships)").fetchone()[0]
        if not synced:
            measure(url, "backfill", 1, "backfill", "--format", "json")
    runs: dict[int, list[list[Measured]]] = {size: [] for size in sizes}
    for number in range(args.heal_rounds):
        for size in sizes if number % 2 == 0 else sizes[::-1]:
            runs[size].append(heal_round(urls[size], args.repair_percent))
            net = per_unit([asdict(m) for m in runs[size][-1]], "heal")[0]
            print(f"  round {number + 1}: {size:,} customers: {net:.1f} us per queued customer (net)", flush=True)
    results["heal"] = {str(size): [[asdict(m) for m in measured] for measured in runs[size]] for size in sizes}
    emit(results, heal_table(results))


def heal_table(results: dict) -> str:
    sizes = sorted(int(size) for size in results["heal"])
    net = {size: [per_unit(round_, "heal")[0] for round_ in results["heal"][str(size)]] for size in sizes}
    lines = ["| customers | rounds | heal, us per queued customer (net): median (min-max) |", "| --- | --- | --- |"]
    lines += [
        f"| {size:,} | {len(values)} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) |"
        for size, values in net.items()
    ]
    smallest, largest = min(sizes), max(sizes)
    ratio = statistics.median(net[largest]) / statistics.median(net[smallest])
    per_round = ", ".join(f"{b / a:.2f}" for a, b in zip(net[smallest], net[largest], strict=False))
    verdict = "meets" if ratio <= 1.2 else "MISSES"
    lines += ["", f"heal: median at {largest:,} / median at {smallest:,}: {ratio:.2f} ({verdict} the 1.2 target);"
              f" round by round: {per_round}"]  # fmt: skip
    results.setdefault("scale_ratios", {})["heal_alone"] = ratio
    return "\n".join(lines)


def run_shared(base: str, args: argparse.Namespace, results: dict) -> None:
    customers = args.shared_customers
    print(
        f"\n## 2. new accounts: {customers:,} customers on {customers // 2:,} new accounts, {args.shared_rounds} rounds"
    )
    url = build(base, f"{args.prefix}_shared_{customers}", customers, SHARED_SHAPE, args.reuse)
    rounds = []
    for number in range(args.shared_rounds):
        order = ["backfill", "statement"] if number % 2 == 0 else ["statement", "backfill"]
        seconds: dict[str, float] = {}
        for variant in order:
            reset(url)
            if variant == "backfill":
                seconds[variant] = timed(lambda: backfill_bench.run_cli(url, "backfill", "--format", "json"))
            else:
                seconds[variant] = timed(lambda: one_statement(url))
            assert drift_rows(url) == 0, f"{variant} left drift"
        rounds.append({**seconds, "ratio": seconds["backfill"] / seconds["statement"], "load": os.getloadavg()[0]})
        print(
            f"  round {number + 1}: backfill {seconds['backfill']:.1f} s, one statement {seconds['statement']:.1f} s,"
            f" ratio {rounds[-1]['ratio']:.2f}; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    ratios = [r["ratio"] for r in rounds]
    results["shared"] = {"customers": customers, "rounds": rounds, "median_ratio": statistics.median(ratios)}
    lines = ["| | median s | min-max s |", "| --- | --- | --- |"]
    for name, key in (("sync-admin backfill (whole process)", "backfill"), ("one set-based statement", "statement")):
        values = [r[key] for r in rounds]
        lines.append(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} |")
    verdict = "meets" if statistics.median(ratios) <= 1.5 else "MISSES"
    lines.append(
        f"\nratio backfill / statement: median {statistics.median(ratios):.2f} (min-max {min(ratios):.2f}-"
        f"{max(ratios):.2f}), {verdict} the 1.5 target"
    )
    emit(results, "\n".join(lines))


def emit(results: dict, text: str) -> None:
    print(text, flush=True)
    results.setdefault("markdown", []).append(text)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (2 if "scale" in results else 0) + (1 if "shared" in results else 0)
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    axes = list(axes[0])
    if "scale" in results:
        sizes = sorted(int(size) for size in results["scale"])
        commands = ("backfill", "verify", "heal")
        samples = {size: [m for measured in results["scale"][str(size)] for m in measured] for size in sizes}
        time_axis, memory_axis = axes.pop(0), axes.pop(0)
        width = 0.8 / len(sizes)
        for offset, size in enumerate(sizes):
            per = [
                statistics.median(v for round_ in results["scale"][str(size)] for v in per_unit(round_, command))
                for command in commands
            ]
            positions = [number + (offset - (len(sizes) - 1) / 2) * width for number in range(len(commands))]
            bars = time_axis.bar(positions, per, width, label=f"{size:,} customers", color=f"C{offset}")
            time_axis.bar_label(bars, fmt="%.0f", fontsize=7)
        time_axis.set_yscale("log")
        time_axis.set_xticks(range(len(commands)), ["backfill", "verify", "heal (per queued, net)"])
        time_axis.set_title("time per customer (median of rounds)")
        time_axis.set_ylabel("microseconds (log scale)")
        time_axis.legend(fontsize=7)
        width = 0.8 / (2 * len(sizes))
        for offset, size in enumerate(sizes):
            for kind, key, hatch in (
                ("sync-admin process", "rss_mib", None),
                ("its backend, RssAnon", "backend_anon_mib", "//"),
            ):
                values = [max((m[key] or 0) for m in samples[size] if m["command"] == command) for command in commands]
                slot = offset * 2 + (1 if hatch else 0)
                positions = [number + (slot - (2 * len(sizes) - 1) / 2) * width for number in range(len(commands))]
                bars = memory_axis.bar(
                    positions,
                    values,
                    width,
                    color=f"C{offset}",
                    hatch=hatch,
                    alpha=0.6 if hatch else 1.0,
                    label=f"{kind}, {size:,}",
                )
                memory_axis.bar_label(bars, fmt="%.0f", fontsize=6)
        memory_axis.set_xticks(range(len(commands)), commands)
        memory_axis.set_title("peak memory (max of rounds)")
        memory_axis.set_ylabel("MiB")
        memory_axis.legend(fontsize=6)
    if "shared" in results:
        axis = axes.pop(0)
        ratios = [r["ratio"] for r in results["shared"]["rounds"]]
        axis.plot(range(1, len(ratios) + 1), ratios, "o-", label="backfill / one statement, per round")
        axis.axhline(statistics.median(ratios), color="C1", label=f"median {statistics.median(ratios):.2f}")
        axis.axhline(1.5, color="C3", linestyle="--", label="target 1.5")
        axis.set_ylim(0, max(2.2, max(ratios) * 1.1))
        axis.set_xticks(range(1, len(ratios) + 1))
        axis.set_xlabel("round (interleaved: A B, B A, ...)")
        axis.set_title(f"{results['shared']['customers']:,} customers, 2 per new account")
        axis.legend(fontsize=7)
    figure.suptitle(results["title"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def source_revision() -> str:
    """The commit the sql/ files were installed from, and whether the work tree differed."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "sql"], capture_output=True, text=True)
    except OSError:
        return "commit unknown"
    return f"commit {commit.stdout.strip() or 'unknown'}{' + uncommitted sql/ changes' if dirty.stdout.strip() else ''}"


def write_results(results: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=1))
    load_start, load_end = results["load_start"][0], results.get("load_end", [float("nan")])[0]
    header = [results["title"], f"load average: start {load_start:.2f}, end {load_end:.2f}"]
    (directory / "results.md").write_text("\n\n".join([*header, *results.get("markdown", [])]) + "\n")
    if "scale" in results or "shared" in results:
        chart(results, directory / "scale.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a server to create the benchmark databases on (default: embedded)")
    parser.add_argument("--customers", default="1000000,10000000", help="sizes of the scale part")
    parser.add_argument("--rounds", default="3,1", help="rounds per size, in --customers order (the last repeats)")
    parser.add_argument("--repair-percent", type=float, default=1.0, help="customers queued for heal, percent")
    parser.add_argument("--shared-customers", type=int, default=1_000_000)
    parser.add_argument("--shared-rounds", type=int, default=5)
    parser.add_argument("--only", choices=("scale", "shared", "heal"))
    parser.add_argument("--heal-rounds", type=int, default=5, help="rounds per size of --only heal")
    parser.add_argument("--prefix", default="sync_scale", help="names of the databases this creates")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--reuse", action="store_true", help="reuse databases a --keep run left (same sizes)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--redraw", action="store_true", help="tables and scale.png again from --results' results.json")
    args = parser.parse_args()
    if args.redraw:
        results = json.loads((args.results / "results.json").read_text())
        if "scale" in results:
            results["markdown"] = [scale_tables(results), *results["markdown"][1:]]
        write_results(results, args.results)
        print("\n\n".join(results["markdown"]))
        return

    base = db.resolve_url(args.database_url) or server.start()
    with psycopg.connect(base) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN"
                " ('shared_buffers', 'work_mem', 'max_wal_size', 'jit', 'random_page_cost')"
            ).fetchall()
        )
    started = time.time()
    load = os.getloadavg()
    title = (
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, PostgreSQL {version}"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(settings.items()))}); {source_revision()}"
    )
    print(title)
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    results: dict = {"title": title, "load_start": load, "started": started}
    names = []
    try:
        if args.only in (None, "scale"):
            names += [f"{args.prefix}_{size}" for size in args.customers.split(",")]
            run_scale(base, args, results)
        if args.only == "heal":
            names += [f"{args.prefix}_{size}" for size in args.customers.split(",")]
            run_heal(base, args, results)
        if args.only in (None, "shared"):
            names.append(f"{args.prefix}_shared_{args.shared_customers}")
            run_shared(base, args, results)
    finally:
        results["load_end"] = os.getloadavg()
        results["seconds"] = time.time() - started
        print(f"load average at end: {' '.join(f'{value:.2f}' for value in results['load_end'])}")
        print(f"took {results['seconds'] / 60:.0f} min")
        write_results(results, args.results)
        print(f"results: {args.results}/results.md, results.json, scale.png")
        if not args.keep:
            with psycopg.connect(base, autocommit=True) as conn:
                for name in names:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
