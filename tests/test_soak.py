"""A randomised soak of the sync under concurrency (issue 11): writers, flag flips, a backfill and the repair.

SOAK_SECONDS (45 by default) of churn in three bursts, on a real database with ~2,000 customers to start with:

* SOAK_WRITERS (4) writer threads, each on its own connection, run transactions of 2-5 statements over several
  customers: updates of zuora_account_id to brand-new accounts, to a pool of shared ones (S1-S20) and to new
  accounts that every writer creates at about the same time in random order (a fresh set every 250 ms),
  single-row and multi-row inserts (VALUES and INSERT ... SELECT), and a few deletes. Even-numbered writers use
  READ COMMITTED and share their customers (half their targets in a hot set of 40); odd-numbered ones use
  REPEATABLE READ, each on customers no other writer touches, coming back to the ones it wrote last. Half the
  think times are a few milliseconds, so that a transaction often begins while the repair of the previous one
  runs;
* a controller flips the flag for the first half of each burst (percentage 10/50/100, everyone on and off, the
  kill switch off and back on) with the plain SQL of docs/sql.md; the tail of the burst holds one state;
* `sync-admin backfill` runs as a real process, half a second after each flag change and every 2 s otherwise;
  in a tail, one backfill that starts after its flag change must end (within the hang guard) beside the churn,
  and the churn goes on for at least 2 s after it with the repair alone;
* `sync-admin heal --poll 1` runs throughout as a real process, stopped with SIGTERM at the end.

The workload commits without the sync by construction. A transaction takes the row locks of the existing
customers it touches in ascending id order: half the transactions lock them all first
(`SELECT ... ORDER BY id FOR UPDATE`), the others statement by statement, each statement the next ones in id
order (so that a new account is claimed before the next row locks are taken, issue 11 class 1). So writers
cannot deadlock one another, and a REPEATABLE READ writer, alone on its customers, cannot meet a concurrent
update. Every exception a writer gets is the sync's doing: each is recorded (class, message, context) and the
test asserts there are none. At the end the flag goes to everyone, the heal drains the queue, a backfill exits
0, `verify` exits 0, the memberships equal the derived state computed here in Python, the heal stops cleanly,
and no skip says `account_unresolved` or `membership_unwritten`. Everything that went wrong is reported
together.

Measured, never asserted (beyond 60 s hang guards): the time from the end of each burst's churn (every writer
done) to zero drift (billing_sync.drifted_customers empty and billing_sync.sync_repairs empty, polled every
50 ms), and how long each tail's backfill took beside the churn. Run with -s for the report; SOAK_SEED replays
the random choices (not the timing).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import psycopg
import pytest
from helpers import FLAG
from sync_state import add_customers, expected_memberships, memberships_of, rollout_ids, set_gates

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "45"))
WRITERS = int(os.environ.get("SOAK_WRITERS", "4"))
SEED = int(os.environ.get("SOAK_SEED", str(random.SystemRandom().randrange(1_000_000))))
BURSTS = 3
CUSTOMERS = 2_000
RR_SLICE = 200  # customers of each REPEATABLE READ writer, touched by no other writer
RECENT = 20  # the customers a REPEATABLE READ writer wrote last, which it comes back to
HOT = 40  # READ COMMITTED writers aim half their targets at these: row contention between them
SHARED_ACCOUNTS = [f"S{i}" for i in range(1, 21)]
ODD = [None, "", " S3 ", "not an account"]
# Hang guards, never assertions on speed.
WAIT_LIMIT_SECONDS = 60
LOCK_TIMEOUT = "10s"  # a writer waiting this long is stalled: the error is recorded like any other
STATEMENT_TIMEOUT = "30s"
POLL_SECONDS = 0.05
# A backfill starts this long after a flag change: the transactions open at the change have ended by then
# (a write whose statement read the old gates is synced by a backfill that starts after it, docs/sql.md).
BACKFILL_DELAY_SECONDS = 0.5
BACKFILL_IDLE_SECONDS = 2.0
HEAL_ONLY_SECONDS = 2.0  # at least this much churn after the tail's backfill, before the churn ends

# Statement kinds of a writer transaction: (weight, existing customers it needs).
KINDS = {
    "update": (40, (1, 1)),
    "update_same": (15, (2, 4)),
    "update_each": (15, (2, 4)),
    "insert": (10, (0, 0)),
    "insert_many": (6, (0, 0)),
    "delete": (3, (1, 1)),
}


def cli(db_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "sync_admin.cli", "--database-url", db_url, *args]


def environment() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}, "PYTHONUNBUFFERED": "1"}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# --- the writers ----------------------------------------------------------------------------------


@dataclass
class WriterError:
    writer: int
    isolation: str
    kinds: list[str]
    error: str
    message: str
    context: str | None = None


@dataclass
class Pools:
    """The customers each writer may touch: READ COMMITTED writers share one pool, each REPEATABLE READ writer
    has its own. New customers join their writer's pool once committed; deleted ones leave it. A REPEATABLE
    READ writer comes back to the customers it wrote last half the time (a session working on a customer)."""

    shared: list[int]
    hot: list[int]
    own: dict[int, list[int]]
    recent: dict[int, deque[int]] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=RECENT)))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def targets(self, writer: int, rng: random.Random, count: int) -> list[int]:
        chosen: set[int] = set()
        with self.lock:
            if writer in self.own:
                pool, recent = self.own[writer], self.recent[writer]
                for _ in range(count):
                    chosen.add(rng.choice(recent) if recent and rng.random() < 0.5 else rng.choice(pool))
            else:
                for _ in range(count):
                    chosen.add(rng.choice(self.hot) if rng.random() < 0.5 else rng.choice(self.shared))
        return sorted(chosen)

    def committed(self, writer: int, touched: list[int], inserted: list[int], deleted: list[int]) -> None:
        with self.lock:
            pool = self.own.get(writer, self.shared)
            pool.extend(inserted)
            recent = self.recent[writer]
            recent.extend([customer_id for customer_id in [*touched, *inserted] if customer_id not in recent])
            for customer_id in deleted:
                if customer_id in pool:
                    pool.remove(customer_id)
                if customer_id in recent:
                    recent.remove(customer_id)


class Writers:
    """Writer threads, each on its own connection, until stopped; every exception is recorded, none retried."""

    def __init__(self, db_url: str, pools: Pools, counters: dict[int, int], burst: int) -> None:
        self.db_url = db_url
        self.pools = pools
        self.counters = counters  # per writer, across bursts: unique account and email numbers
        self.burst = burst
        self.stop = threading.Event()
        self.errors: list[WriterError] = []
        self.crashed: list[BaseException] = []
        self.durations: list[float] = []
        self.statements: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._write, args=(n,), name=f"writer {n}") for n in range(WRITERS)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(WAIT_LIMIT_SECONDS)
        assert not any(thread.is_alive() for thread in self.threads), "a writer hung"

    @staticmethod
    def isolation(writer: int) -> psycopg.IsolationLevel:
        return psycopg.IsolationLevel.REPEATABLE_READ if writer % 2 else psycopg.IsolationLevel.READ_COMMITTED

    def _connect(self, writer: int) -> psycopg.Connection:
        conn = psycopg.connect(self.db_url, autocommit=True, application_name=f"soak writer {writer}")
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
        conn.autocommit = False
        conn.isolation_level = self.isolation(writer)
        return conn

    def _write(self, writer: int) -> None:
        rng = random.Random(SEED * 1000 + self.burst * 100 + writer)
        conn = self._connect(writer)
        try:
            while not self.stop.is_set():
                kinds = rng.choices(list(KINDS), weights=[w for w, _ in KINDS.values()], k=rng.randint(2, 5))
                started = time.monotonic()
                try:
                    targets, inserted, deleted = self._transaction(conn, writer, rng, kinds)
                except psycopg.Error as exc:
                    with self.lock:
                        self.errors.append(
                            WriterError(
                                writer,
                                conn.isolation_level.name,
                                kinds,
                                type(exc).__name__,
                                first_line(exc),
                                exc.diag.context,
                            )
                        )
                    if conn.broken:
                        conn = self._connect(writer)
                    continue
                with self.lock:
                    self.durations.append(time.monotonic() - started)
                    self.statements.update(kinds)
                self.pools.committed(writer, targets, inserted, deleted)
                # Think time, so that the soak leaves the server room; a short one half the time, so that the next
                # transaction often begins while the repair of the previous one is running.
                time.sleep(rng.uniform(0, 0.003) if rng.random() < 0.5 else rng.uniform(0.02, 0.06))
        except BaseException as exc:  # a bug of the test itself: reported, not lost in a thread
            self.crashed.append(exc)
        finally:
            conn.close()

    def _value(self, writer: int, rng: random.Random) -> str | None:
        roll = rng.random()
        if roll < 0.3:
            self.counters[writer] += 1
            return f"N{writer}-{self.counters[writer]}"  # brand new, this writer's alone
        if roll < 0.55:
            return rng.choice(SHARED_ACCOUNTS)
        if roll < 0.92:
            # New accounts every writer creates at about the same time, in random order.
            return f"P{int(time.monotonic() * 4)}-{rng.randrange(4)}"
        return rng.choice(ODD)

    def _email(self, writer: int) -> str:
        self.counters[writer] += 1
        return f"soak-{writer}-{self.counters[writer]}@example.com"

    def _pause(self, rng: random.Random) -> None:
        # The application's work between statements keeps a transaction open: claims, row locks and snapshots
        # overlap other transactions (and the repair) more.
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.01))

    def _transaction(
        self, conn: psycopg.Connection, writer: int, rng: random.Random, kinds: list[str]
    ) -> tuple[list[int], list[int], list[int]]:
        needs = [rng.randint(*KINDS[kind][1]) for kind in kinds]
        targets = self.pools.targets(writer, rng, sum(needs))
        # Half the transactions lock all their existing customers first; the others take them statement by
        # statement, each statement the next ones in id order, so that a statement creating a new account comes
        # before the row locks of the next (issue 11, class 1). Either way a transaction's row locks are taken in
        # ascending id order: the writers cannot deadlock one another.
        upfront = rng.random() < 0.5
        inserted: list[int] = []
        deleted: list[int] = []
        taken = 0
        with conn.transaction():
            if upfront and targets:
                conn.execute("SELECT id FROM public.customers WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (targets,))
            for kind, need in zip(kinds, needs, strict=True):
                if upfront:
                    some = rng.sample(targets, min(need, len(targets)))
                else:
                    some = targets[taken : taken + need]
                    taken += need
                    if some:
                        conn.execute(
                            "SELECT id FROM public.customers WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (some,)
                        )
                if kind == "update" and some:
                    conn.execute(
                        "UPDATE public.customers SET zuora_account_id = %s WHERE id = %s",
                        (self._value(writer, rng), some[0]),
                    )
                elif kind == "update_same" and some:
                    conn.execute(
                        "UPDATE public.customers SET zuora_account_id = %s WHERE id = ANY(%s)",
                        (self._value(writer, rng), some),
                    )
                elif kind == "update_each" and some:
                    conn.execute(
                        "UPDATE public.customers c SET zuora_account_id = v.value"
                        " FROM unnest(%s::bigint[], %s::text[]) AS v(id, value) WHERE c.id = v.id",
                        (some, [self._value(writer, rng) for _ in some]),
                    )
                elif kind == "insert":
                    row = conn.execute(
                        "INSERT INTO public.customers (email, zuora_account_id) VALUES (%s, %s) RETURNING id",
                        (self._email(writer), self._value(writer, rng)),
                    ).fetchone()
                    inserted.append(row[0])
                elif kind == "insert_many":
                    rows = [(self._email(writer), self._value(writer, rng)) for _ in range(rng.randint(2, 5))]
                    if rng.random() < 0.5:
                        cursor = conn.execute(
                            "INSERT INTO public.customers (email, zuora_account_id)"
                            " SELECT e, v FROM unnest(%s::text[], %s::text[]) AS t(e, v) RETURNING id",
                            ([e for e, _ in rows], [v for _, v in rows]),
                        )
                    else:
                        placeholders = ", ".join(["(%s, %s)"] * len(rows))
                        cursor = conn.execute(
                            "INSERT INTO public.customers (email, zuora_account_id)"
                            f" VALUES {placeholders} RETURNING id",
                            [item for pair in rows for item in pair],
                        )
                    inserted.extend(row[0] for row in cursor.fetchall())
                elif kind == "delete" and some:
                    conn.execute("DELETE FROM public.customers WHERE id = %s", (some[0],))
                    deleted.append(some[0])
                self._pause(rng)
        return targets, inserted, deleted


# --- the flag, the backfill, the heal ---------------------------------------------------------------


class FlagLog:
    """The flag changes, with the plain SQL of docs/sql.md; the backfill loop starts after each."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.changes: list[tuple[float, str]] = []
        self.last_change = time.monotonic()

    def change(self, what: str, assignments: str, *params: object) -> None:
        with self.conn.transaction():
            self.conn.execute(
                "SELECT set_config('billing_sync.actor', 'soak', true), set_config('billing_sync.reason', %s, true)",
                (what,),
            )
            self.conn.execute(f"UPDATE billing_sync.feature_flags SET {assignments} WHERE name = %s", (*params, FLAG))
        self.last_change = time.monotonic()
        self.changes.append((self.last_change, what))


def percentage(log: FlagLog, value: int) -> None:
    log.change(f"percentage {value}", "enabled = true, everyone = false, percentage = %s", value)


def everyone(log: FlagLog, on: bool) -> None:
    log.change(f"everyone {'on' if on else 'off'}", "enabled = true, everyone = %s", on)


def kill_switch(log: FlagLog, on: bool) -> None:
    log.change("kill switch off" if not on else "resume", "enabled = %s", on)


def flip_flags(log: FlagLog, stop: threading.Event, rng: random.Random) -> None:
    """Until stopped: a random flag change every 0.5-2 s; the kill switch comes back on after 0.3-1.5 s."""
    while not stop.wait(rng.uniform(0.5, 2.0)):
        roll = rng.random()
        if roll < 0.45:
            percentage(log, rng.choice([10, 50, 100]))
        elif roll < 0.75:
            everyone(log, rng.random() < 0.5)
        else:
            kill_switch(log, False)
            stop.wait(rng.uniform(0.3, 1.5))
            kill_switch(log, True)


@dataclass
class BackfillRun:
    started: float
    ended: float
    code: int
    out: str
    err: str


class BackfillLoop:
    """`sync-admin backfill` as a process, again and again: BACKFILL_DELAY_SECONDS after each flag change, and
    every BACKFILL_IDLE_SECONDS unless settling (then only after a change). One at a time (it is one at a time
    anyway: a session advisory lock)."""

    def __init__(self, db_url: str, log: FlagLog) -> None:
        self.db_url = db_url
        self.log = log
        self.stop = threading.Event()
        self.settling = threading.Event()
        self.runs: list[BackfillRun] = []
        self.running_since: float | None = None
        self.last_started = 0.0
        self.stopped_at = 0.0
        self.crashed: list[BaseException] = []
        self.thread = threading.Thread(target=self._loop, name="backfill loop")

    def __enter__(self) -> BackfillLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped_at = time.monotonic()
        self.stop.set()
        self.thread.join(WAIT_LIMIT_SECONDS + 10)
        assert not self.thread.is_alive(), "the backfill loop hung"

    def _loop(self) -> None:
        try:
            last_end = 0.0
            while not self.stop.is_set():
                now = time.monotonic()
                after_change = (
                    self.log.last_change > self.last_started and now - self.log.last_change >= BACKFILL_DELAY_SECONDS
                )
                idle = not self.settling.is_set() and now - last_end >= BACKFILL_IDLE_SECONDS
                if after_change or idle:
                    self.runs.append(self._one())
                    last_end = time.monotonic()
                else:
                    self.stop.wait(0.05)
        except BaseException as exc:
            self.crashed.append(exc)

    def run_after(self, moment: float, limit: float, conn: psycopg.Connection) -> tuple[BackfillRun | None, list[str]]:
        """The first run started after MOMENT once it has ended, or None after LIMIT seconds; the run's state
        every 5 s meanwhile."""
        deadline = time.monotonic() + limit
        samples: list[str] = []
        while time.monotonic() < deadline:
            done = [run for run in self.runs if run.started > moment]
            if done:
                return done[0], samples
            if len(samples) < (time.monotonic() - moment) // 5:
                samples.append(f"{time.monotonic() - moment:.0f}s: {backfill_state(conn)}")
            time.sleep(POLL_SECONDS)
        return None, samples

    def _one(self) -> BackfillRun:
        started = time.monotonic()
        self.running_since = self.last_started = started
        process = subprocess.Popen(
            cli(self.db_url, "backfill", "--batch-size", "250", "--format", "json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        try:
            # No bound while the churn goes on: the final sweep finishes only when it finds nothing left.
            while True:
                try:
                    out, err = process.communicate(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    if self.stop.is_set() and time.monotonic() - self.stopped_at > WAIT_LIMIT_SECONDS:
                        process.kill()
                        out, err = process.communicate()
                        return BackfillRun(started, time.monotonic(), -9, out, "killed by the hang guard\n" + err)
        finally:
            self.running_since = None
        return BackfillRun(started, time.monotonic(), process.returncode, out, err)


class HealProcess:
    """`sync-admin heal --poll 1` as a real process; its output pumped so that its pipes never fill."""

    def __init__(self, db_url: str) -> None:
        self.process = subprocess.Popen(
            cli(db_url, "heal", "--poll", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(self.process.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._collect, args=(self.process.stderr, self.err), daemon=True).start()

    @staticmethod
    def _pump(stream, lines: queue.Queue[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    @staticmethod
    def _collect(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_started(self) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self.out.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"heal exited {self.process.returncode}: {self.err}"
                continue
            self.lines.append(line)
            if "repairing the queue" in line:
                return
        raise AssertionError(f"heal never started: {self.lines} {self.err}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=WAIT_LIMIT_SECONDS)
        time.sleep(0.2)  # the pumps read the last lines
        while True:
            try:
                self.lines.append(self.out.get_nowait())
            except queue.Empty:
                return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- convergence ----------------------------------------------------------------------------------------


def drift_and_queue(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM unnest(billing_sync.drifted_customers(1000000))),"
        " (SELECT count(*) FROM billing_sync.sync_repairs)"
    ).fetchone()
    return row[0], row[1]


def backfill_state(conn: psycopg.Connection) -> str:
    """The newest backfill run (phase, batches, busy, changes), the drift and the queue by reason."""
    run = conn.execute(
        "SELECT id, status, CASE WHEN last_id >= max_id THEN 'sweep' ELSE 'range' END, batches, busy,"
        " accounts_created, memberships_added, memberships_removed FROM billing_sync.backfill_runs"
        " ORDER BY id DESC LIMIT 1"
    ).fetchone()
    queued = dict(conn.execute("SELECT reason, count(*) FROM billing_sync.sync_repairs GROUP BY 1 ORDER BY 1"))
    drift = conn.execute("SELECT count(*) FROM unnest(billing_sync.drifted_customers(1000000))").fetchone()[0]
    return f"run {run}, drift {drift}, queued {queued}"


def diagnosis(conn: psycopg.Connection) -> str:
    """What is still out of state, for a failure message."""
    drifted = conn.execute("SELECT billing_sync.drifted_customers(10)").fetchone()[0]
    customers = conn.execute(
        "SELECT id, zuora_account_id, billing_sync.flag_enabled_for(%s, id) FROM public.customers"
        " WHERE id = ANY(%s) ORDER BY id",
        (FLAG, drifted),
    ).fetchall()
    members = sorted(memberships_of(conn, set(drifted)))
    queued = conn.execute(
        "SELECT customer_id, reason, transaction_id, recorded_at FROM billing_sync.sync_repairs ORDER BY id LIMIT 10"
    ).fetchall()
    activity = conn.execute(
        "SELECT pid, application_name, state, xact_start, left(query, 80) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'"
    ).fetchall()
    flag = conn.execute(
        "SELECT enabled, everyone, percentage FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)
    ).fetchone()
    return f"flag {flag}; drifted {customers}; their memberships {members}; queue {queued}; active sessions {activity}"


def time_to_zero_drift(conn: psycopg.Connection, since: float) -> float:
    """Seconds from SINCE until no customer of the cohort drifts and the repair queue is empty."""
    while True:
        drift, queued = drift_and_queue(conn)
        now = time.monotonic()
        if drift == 0 and queued == 0:
            return now - since
        if now - since > WAIT_LIMIT_SECONDS:
            pytest.fail(
                f"no convergence {WAIT_LIMIT_SECONDS}s after the churn: {drift} drifted, {queued} queued; "
                + diagnosis(conn)
            )
        time.sleep(POLL_SECONDS)


def wait_for_empty_queue(conn: psycopg.Connection) -> float:
    started = time.monotonic()
    while conn.execute("SELECT count(*) FROM billing_sync.sync_repairs").fetchone()[0]:
        if time.monotonic() - started > WAIT_LIMIT_SECONDS:
            pytest.fail("the heal never drained the repair queue: " + diagnosis(conn))
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# --- the soak ---------------------------------------------------------------------------------------------


@pytest.mark.slow(48)
def test_soak_writers_flag_flips_backfill_and_heal_fail_nothing_and_converge(conn, connect, db_url):
    rng = random.Random(SEED)
    print(f"\nsoak: seed {SEED} (SOAK_SEED), {SOAK_SECONDS:g}s of churn in {BURSTS} bursts, {WRITERS} writers")

    # ~2,000 customers on a mix of shared and own accounts, the flag on for half of them.
    set_gates(conn, percentage=50)
    values = [
        rng.choice(SHARED_ACCOUNTS) if roll < 0.55 else (f"U{i}" if roll < 0.92 else rng.choice(ODD))
        for i, roll in enumerate(rng.random() for _ in range(CUSTOMERS))
    ]
    ids = add_customers(conn, values)
    rng.shuffle(ids)
    rr_writers = [n for n in range(WRITERS) if Writers.isolation(n) == psycopg.IsolationLevel.REPEATABLE_READ]
    own = {n: ids[i * RR_SLICE : (i + 1) * RR_SLICE] for i, n in enumerate(rr_writers)}
    shared = ids[len(rr_writers) * RR_SLICE :]
    pools = Pools(shared=shared, hot=shared[:HOT], own=own)
    counters = dict.fromkeys(range(WRITERS), 0)

    log = FlagLog(connect())
    heal = HealProcess(db_url)
    problems: list[str] = []  # everything that went wrong, asserted together at the end
    errors: list[WriterError] = []
    durations: list[float] = []
    statements: Counter[str] = Counter()
    convergence: list[float] = []  # seconds from the end of each burst's churn to zero drift
    settled: list[float] = []  # seconds from each tail's flag change to the end of a backfill started after it
    try:
        heal.wait_started()
        with BackfillLoop(db_url, log) as backfills:
            burst_seconds = SOAK_SECONDS / BURSTS
            tails = [lambda: percentage(log, 50), lambda: everyone(log, True), lambda: percentage(log, 100)]
            backfill_stuck = False
            for burst in range(BURSTS):
                stop_flips = threading.Event()
                flipper = threading.Thread(target=flip_flags, args=(log, stop_flips, random.Random(SEED + burst)))
                burst_end = time.monotonic() + burst_seconds
                with Writers(db_url, pools, counters, burst) as writers:
                    flipper.start()
                    time.sleep(burst_seconds * 0.5)
                    stop_flips.set()
                    flipper.join(WAIT_LIMIT_SECONDS)
                    # The tail: one flag state, the writers still churning. A backfill that starts after the change
                    # brings the customers it adds to the cohort (nothing else does: docs/sql.md, "When the cohort
                    # changes"); after it, what the churn leaves is the repair's alone.
                    backfills.settling.set()
                    tails[burst]()
                    limit = WAIT_LIMIT_SECONDS if not backfill_stuck else max(0.0, burst_end - time.monotonic())
                    covering, samples = backfills.run_after(log.last_change, limit, conn)
                    if covering is not None:
                        settled.append(covering.ended - log.last_change)
                        time.sleep(max(HEAL_ONLY_SECONDS, burst_end - time.monotonic()))
                    elif not backfill_stuck:
                        backfill_stuck = True
                        problems.append(
                            f"burst {burst + 1}: a backfill started after the tail's flag change had not finished"
                            f" {WAIT_LIMIT_SECONDS}s later beside the churn (the final sweep never found nothing"
                            f" left); its run every 5 s: {samples}"
                        )
                churn_end = time.monotonic()  # every writer has ended its last transaction
                backfill_running = backfills.running_since is not None
                seconds = time_to_zero_drift(conn, churn_end)
                backfills.settling.clear()
                convergence.append(seconds)
                assert writers.crashed == [], writers.crashed
                errors += writers.errors
                durations += writers.durations
                statements += writers.statements
                tail = f"backfilled {settled[-1]:.1f}s after its flag change" if covering else "not backfilled"
                print(
                    f"soak: burst {burst + 1}: {len(writers.durations)} transactions, {len(writers.errors)} errors;"
                    f" the tail's cohort {tail}; zero drift {seconds:.3f}s after the churn"
                    f" ({'with a backfill running' if backfill_running else 'the repair alone'})"
                )
        assert backfills.crashed == [], backfills.crashed

        # The end: a final flag state, the heal drains the queue, one more backfill, verify.
        everyone(log, True)
        drained = wait_for_empty_queue(conn)
        final_backfill = subprocess.run(
            cli(db_url, "backfill", "--format", "json"),
            capture_output=True,
            text=True,
            env=environment(),
            timeout=WAIT_LIMIT_SECONDS,
        )
        final_verify = subprocess.run(
            cli(db_url, "verify"), capture_output=True, text=True, env=environment(), timeout=WAIT_LIMIT_SECONDS
        )
        expected = expected_memberships(conn)
        actual = memberships_of(conn, rollout_ids(conn))
        heal_code = heal.terminate()
    finally:
        heal.kill()

    reasons = dict(conn.execute("SELECT reason, count(*) FROM billing_sync.sync_events GROUP BY 1 ORDER BY 1"))
    customers, accounts_count = conn.execute(
        "SELECT (SELECT count(*) FROM public.customers), (SELECT count(*) FROM public.billing_accounts)"
    ).fetchone()
    error_kinds = Counter(f"{e.isolation} {e.error}: {e.message}" for e in errors)
    print(
        f"soak: {len(durations)} transactions ({dict(statements)}), {customers} customers, {accounts_count} accounts;"
        f" transaction time p50 {percentile(durations, 0.5) * 1000:.1f} ms,"
        f" p99 {percentile(durations, 0.99) * 1000:.1f} ms, max {max(durations, default=0) * 1000:.1f} ms"
    )
    print(f"soak: flag changes {len(log.changes)}: {dict(Counter(what for _, what in log.changes))}")
    print(
        "soak: backfills during the soak: "
        + ", ".join(f"exit {r.code} in {r.ended - r.started:.1f}s" for r in backfills.runs)
    )
    if settled:
        print(f"soak: a tail's cohort backfilled beside the churn in {', '.join(f'{t:.1f}' for t in settled)}s")
    print(
        f"soak: time from the end of the churn to zero drift: median {statistics.median(convergence):.3f}s,"
        f" worst {max(convergence):.3f}s ({', '.join(f'{t:.3f}' for t in convergence)})"
    )
    print(f"soak: final queue drained in {drained:.3f}s; sync events by reason {reasons}")
    print(f"soak: heal {heal.lines[-1] if heal.lines else '(no output)'}; stderr {heal.err[-5:]}")
    print(f"soak: writer errors {len(errors)}: {dict(error_kinds.most_common(10))}")

    if errors:
        problems.insert(0, f"{len(errors)} customer writes failed: {dict(error_kinds)}; the first: {errors[:5]}")
    problems += [
        f"a backfill during the soak exited {r.code}: {r.err.strip().splitlines()[-1:]}"
        for r in backfills.runs
        if r.code != 0
    ]
    if final_backfill.returncode != 0:
        problems.append(f"the final backfill exited {final_backfill.returncode}: {final_backfill.stderr.strip()}")
    if final_verify.returncode != 0:
        problems.append(f"verify exited {final_verify.returncode}: {final_verify.stdout} {final_verify.stderr}")
    if actual != expected:
        problems.append(
            f"memberships: extra {sorted(actual - expected)[:10]}, missing {sorted(expected - actual)[:10]}"
        )
    if heal_code != 0 or not heal.lines[-1].endswith("customers repaired") or heal.err:
        problems.append(f"heal exited {heal_code}: {heal.lines[-1:]} {heal.err}")
    # Contention is never reported as "unresolved", and nothing suppressed a membership.
    if reasons.get("account_unresolved", 0) or reasons.get("membership_unwritten", 0):
        problems.append(f"sync events {reasons}")
    assert problems == [], "\n".join(problems)
