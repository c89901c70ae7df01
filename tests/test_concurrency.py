"""Issue 11: the sync under real concurrency, one class of the issue at a time.

Every test is a deterministic, step-by-step interleaving of real sessions. A step that must not wait runs
through `at_once`, which watches the session with pg_blocking_pids while its statement runs
and fails the test the moment it waits on another backend (the sessions' lock_timeout and
statement_timeout are only a safety net, so that nothing can hang). A wait the application itself has
(a row another transaction holds) is made explicit with wait_until_blocked. At the end both sessions have
committed and the derived state is exact, after the repair (`billing_sync.repair_queued`, or
`sync-admin heal --once`, or the backfill's sweep) when the sync had to leave something.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from helpers import (
    accounts,
    flag_on,
    insert_customer,
    memberships,
    next_xid,
    outcome,
    own_xids,
    run_cli,
    wait_until_blocked,
)
from pgtools import fresh_database, url_as
from psycopg import sql
from psycopg.rows import dict_row
from sync_state import add_customers, expected_memberships, memberships_of, mixed_values, rollout_ids, set_gates

from sync_admin import migrate, verify

# Hang guards only, never assertions on speed: a step that should not wait fails long before these.
LOCK_TIMEOUT = "8s"
STATEMENT_TIMEOUT = "15s"
GUARD_SECONDS = 20
# The lock classes of billing_sync.claim_account (revision 0008): one key per account, and the regions
# (billing_sync.claim_regions(): a quarter of max_locks_per_transaction, which is also the budget of single claims).
ACCOUNT_CLASS = 7300002
REGION_CLASS = 7300004


# --- sessions ----------------------------------------------------------------------------------------


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def guarded(
    connect: Callable[..., psycopg.Connection], *, autocommit: bool = False, isolation: str | None = None
) -> psycopg.Connection:
    """A session that cannot hang the suite, and in which any deadlock shows within 100 ms."""
    session = connect(autocommit=autocommit)
    session.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    session.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    session.execute("SET deadlock_timeout = '100ms'")
    if not autocommit:
        session.commit()
    if isolation == "repeatable read":
        session.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    elif isolation == "serializable":
        session.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    return session


def _rows(session: psycopg.Connection, statement: str, params: Sequence | None) -> list[tuple]:
    cursor = session.execute(statement, params)
    return cursor.fetchall() if cursor.description else []


def at_once(
    observer: psycopg.Connection, session: psycopg.Connection, statement: str, params: Sequence | None = None
) -> list[tuple]:
    """Run STATEMENT in SESSION and return its rows; fail if it ever waits on a lock held by another backend."""
    pid = session.info.backend_pid
    blockers: list[int] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_rows, session, statement, params)
        while not future.done():
            row = observer.execute("SELECT pg_blocking_pids(%s)", (pid,)).fetchone()
            if row and row[0]:
                blockers = list(row[0])
                session.cancel_safe()
                break
            time.sleep(0.002)
        try:
            rows = future.result(timeout=GUARD_SECONDS)
        except psycopg.Error as exc:
            if blockers:
                raise AssertionError(f"{statement!r} waited for backend(s) {blockers} and was cancelled") from exc
            raise
    assert not blockers, f"{statement!r} waited for backend(s) {blockers}"
    return rows


# --- the state the tests compare -----------------------------------------------------------------------


def skips(conn: psycopg.Connection) -> list[tuple[int, str, str]]:
    """(customer_id, operation, reason) of every sync_events row, oldest first."""
    return conn.execute("SELECT customer_id, operation, reason FROM billing_sync.sync_events ORDER BY id").fetchall()


def queued(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(customer_id, reason) of every queued repair, oldest first."""
    return conn.execute("SELECT customer_id, reason FROM billing_sync.sync_repairs ORDER BY id").fetchall()


def repair(conn: psycopg.Connection) -> dict:
    """One pass of the repair in its own READ COMMITTED transaction (conn is autocommit)."""
    row = conn.cursor(row_factory=dict_row).execute("SELECT * FROM billing_sync.repair_queued(1000)").fetchone()
    assert row is not None
    return row


def assert_exact(conn: psycopg.Connection) -> None:
    """Every customer the flag is on for has exactly its derived membership, nothing else; nothing queued."""
    assert memberships_of(conn, rollout_ids(conn)) == expected_memberships(conn)
    assert memberships(conn) == memberships_of(conn, rollout_ids(conn))
    assert conn.execute("SELECT billing_sync.drifted_customers(1000000)").fetchone() == ([],)
    assert verify.check(conn).clean
    assert queued(conn) == []


def region_of(conn: psycopg.Connection, account: str) -> int:
    return conn.execute("SELECT billing_sync.claim_region(%s)", (account,)).fetchone()[0]


def claim_budget(conn: psycopg.Connection) -> int:
    """The regions, and a transaction's budget of single claims (16 at the default max_locks_per_transaction)."""
    return conn.execute("SELECT billing_sync.claim_regions()").fetchone()[0]


def advisory_locks(observer: psycopg.Connection, session: psycopg.Connection) -> tuple[int, int]:
    """(pg_locks rows, distinct lock objects) of advisory locks SESSION holds, seen from OBSERVER."""
    row = observer.execute(
        "SELECT count(*), count(DISTINCT (classid, objid, objsubid)) FROM pg_locks"
        " WHERE pid = %s AND locktype = 'advisory' AND granted",
        (session.info.backend_pid,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


# --- 1. no deadlock the application would not have had ---------------------------------------------------


@pytest.mark.parametrize("second_write", ["update", "insert"])
def test_a_writer_never_waits_for_a_claim_held_by_a_transaction_that_waits_for_its_row(
    conn, connect, threads, second_write
):
    """The issue's deadlock: S1 holds the claim on a new account and waits for S2's row; S2 then wants the
    same new account. S2 must not wait (that closes the cycle): it skips, and the repair brings it."""
    flag_on(conn)
    c1, c2, c3 = (insert_customer(conn, "OLD") for _ in range(3))
    s1, s2 = guarded(connect), guarded(connect)
    at_once(conn, s2, "UPDATE public.customers SET email = 'held@example.com' WHERE id = %s", (c2,))
    at_once(conn, s1, "UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (c1,))
    pending = threads.submit(s1.execute, "UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (c2,))
    wait_until_blocked(conn, s1)  # the application's own wait: S1 wants the row S2 holds

    if second_write == "update":
        at_once(conn, s2, "UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (c3,))
        target, operation = c3, "UPDATE"
    else:
        target = at_once(
            conn,
            s2,
            "INSERT INTO public.customers (email, zuora_account_id) VALUES ('s2@example.com', 'NEW-1') RETURNING id",
        )[0][0]
        operation = "INSERT"
    s2.commit()
    assert not isinstance(outcome(pending), Exception)
    s1.commit()

    assert skips(conn) == [(target, operation, "account_contended")]
    assert queued(conn) == [(target, "account_contended")]
    assert (target, "NEW-1") not in memberships(conn)
    done = repair(conn)
    assert (done["customers"], done["left_ids"], done["still_queued"]) == (1, [], 0)
    assert (target, "NEW-1") in memberships(conn)
    assert_exact(conn)
    assert conn.execute("SELECT count(*) FROM public.billing_accounts WHERE zuora_account_id = 'NEW-1'").fetchone() == (
        1,
    )


def same_region_pair(conn: psycopg.Connection) -> tuple[str, str]:
    """Two account values in one region (billing_sync.claim_region) with different account keys (hashtext)."""
    row = conn.execute(
        "SELECT a.v, b.v FROM (SELECT 'NEW-A' || g AS v FROM generate_series(1, 64) g) a"
        " JOIN (SELECT 'NEW-B' || g AS v FROM generate_series(1, 64) g) b"
        "   ON billing_sync.claim_region(a.v) = billing_sync.claim_region(b.v) AND hashtext(a.v) <> hashtext(b.v)"
        " ORDER BY a.v, b.v LIMIT 1"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("second_write", ["insert", "multi-row insert", "update"])
def test_two_unrelated_new_accounts_in_one_region_never_contend(conn, connect, threads, second_write):
    """No false sharing: single claims take their region shared, so two new accounts that share a region
    (the 64 buckets of 0006 made these deadlock) are both created at once, without a skip, even while the
    first creator waits for a row the second holds."""
    first_account, second_account = same_region_pair(conn)
    assert region_of(conn, first_account) == region_of(conn, second_account)
    flag_on(conn)
    held, other = insert_customer(conn, "OLD"), insert_customer(conn, "OLD")
    s1, s2 = guarded(connect), guarded(connect)
    at_once(conn, s2, "UPDATE public.customers SET email = 'held@example.com' WHERE id = %s", (held,))
    first = at_once(
        conn,
        s1,
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', %s) RETURNING id",
        (first_account,),
    )[0][0]
    pending = threads.submit(
        s1.execute, "UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (first_account, held)
    )
    wait_until_blocked(conn, s1)

    if second_write == "insert":
        seconds = [
            at_once(
                conn,
                s2,
                "INSERT INTO public.customers (email, zuora_account_id) VALUES ('b@example.com', %s) RETURNING id",
                (second_account,),
            )[0][0]
        ]
    elif second_write == "multi-row insert":
        seconds = [
            row[0]
            for row in at_once(
                conn,
                s2,
                "INSERT INTO public.customers (email, zuora_account_id)"
                " SELECT 'b' || g || '@example.com', %s FROM generate_series(1, 3) g RETURNING id",
                (second_account,),
            )
        ]
    else:
        at_once(conn, s2, "UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (second_account, other))
        seconds = [other]
    s2.commit()
    assert not isinstance(outcome(pending), Exception)
    s1.commit()

    assert skips(conn) == [] and queued(conn) == []
    assert memberships(conn) == {(first, first_account), (held, first_account)} | {
        (c, second_account) for c in seconds
    } | ({(other, "OLD")} if second_write != "update" else set())
    assert_exact(conn)


# --- 2. no stall behind other transactions ------------------------------------------------------------------


def import_statement(count: int) -> str:
    return (
        "INSERT INTO public.customers (email, zuora_account_id)"
        f" SELECT 'imp' || g || '@example.com', 'IMP-' || g FROM generate_series(1, {count}) g"
    )


def signup_accounts(conn: psycopg.Connection, imported: int) -> tuple[str, str]:
    """(a new account in a region the import of IMPORTED accounts does not cover, one in a region it covers)."""
    row = conn.execute(
        """
        WITH covered AS (
            SELECT DISTINCT billing_sync.claim_region('IMP-' || g) AS region FROM generate_series(1, %s) g
        ),
        candidates AS (
            SELECT 'SIGNUP-' || g AS v, g,
                   billing_sync.claim_region('SIGNUP-' || g) IN (SELECT region FROM covered) AS inside
            FROM generate_series(1, 1000) g
        )
        SELECT (SELECT v FROM candidates WHERE NOT inside ORDER BY g LIMIT 1),
               (SELECT v FROM candidates WHERE inside ORDER BY g LIMIT 1)
        """,
        (imported,),
    ).fetchone()
    assert row is not None and None not in row
    return row[0], row[1]


def insert_customer_at_once(observer: psycopg.Connection, session: psycopg.Connection, account: str | None) -> int:
    return at_once(
        observer,
        session,
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('signup@example.com', %s) RETURNING id",
        (account,),
    )[0][0]


def test_an_open_import_within_the_claim_budget_blocks_no_unrelated_signup(conn, connect):
    """Within the claim budget an import takes single claims: unrelated new accounts are all free."""
    flag_on(conn)
    budget = claim_budget(conn)
    outside, inside = signup_accounts(conn, budget)
    importer = guarded(connect)
    at_once(conn, importer, import_statement(budget))
    rows, objects = advisory_locks(conn, importer)
    assert objects <= 2 * budget, (rows, objects)

    signup = guarded(connect, autocommit=True)
    signed = []
    for account in (outside, inside):
        signed.append(insert_customer_at_once(conn, signup, account))
    assert memberships_of(conn, set(signed)) == {(signed[0], outside), (signed[1], inside)}  # the import is open
    assert skips(conn) == [] and queued(conn) == []
    importer.commit()
    assert_exact(conn)
    assert len(memberships(conn)) == budget + 2


def test_an_open_import_past_the_claim_budget_stalls_no_signup_and_what_it_covers_is_repaired(conn, connect):
    """Past the budget an import takes whole regions (at most claim_regions() locks): a signup to a new account
    in one of them does not wait either; it is skipped as contended and repaired once the import has ended."""
    flag_on(conn)
    budget = claim_budget(conn)
    outside, inside = signup_accounts(conn, budget + 4)
    importer = guarded(connect)
    at_once(conn, importer, import_statement(budget + 4))
    rows, objects = advisory_locks(conn, importer)
    assert rows <= budget and objects <= budget, (rows, objects)

    signup = guarded(connect, autocommit=True)
    free = insert_customer_at_once(conn, signup, outside)
    covered = insert_customer_at_once(conn, signup, inside)
    assert memberships_of(conn, {free, covered}) == {(free, outside)}
    assert skips(conn) == [(covered, "INSERT", "account_contended")]
    assert queued(conn) == [(covered, "account_contended")]
    held = repair(conn)  # while the import is open the repair leaves it, without waiting either
    assert (held["left_ids"], held["still_queued"]) == ([covered], 1)

    importer.commit()
    done = repair(conn)
    assert (done["left_ids"], done["still_queued"]) == ([], 0)
    assert memberships_of(conn, {free, covered}) == {(free, outside), (covered, inside)}
    assert_exact(conn)
    assert len(memberships(conn)) == budget + 4 + 2


@contextmanager
def role_without_grants(conn: psycopg.Connection, db_url: str) -> Iterator[str]:
    """A login role with no grant at all (PUBLIC's CONNECT only); the URL to connect as it."""
    name = f"bs_rogue_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    try:
        yield url_as(db_url, name, password)
    finally:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        deadline = time.monotonic() + GUARD_SECONDS
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (name,)).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


ROGUE_HOLDS = {
    "the account key": "SELECT pg_advisory_lock({account_class}, hashtext('X'))",
    "the account key shared": "SELECT pg_advisory_lock_shared({account_class}, hashtext('X'))",
    "the region": "SELECT pg_advisory_lock({region_class}, {region})",
    "the region and the account key": "SELECT pg_advisory_lock({region_class}, {region}),"
    " pg_advisory_lock({account_class}, hashtext('X'))",
}


@pytest.mark.parametrize("holds", ROGUE_HOLDS, ids=list(ROGUE_HOLDS))
def test_a_role_without_grants_holding_the_claim_keys_stalls_no_signup(conn, connect, db_url, capsys, holds):
    flag_on(conn)
    mover = insert_customer(conn, "OLD")
    with role_without_grants(conn, db_url) as rogue_url, psycopg.connect(rogue_url, autocommit=True) as rogue:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rogue.execute("SELECT 1 FROM public.billing_accounts")  # it has no grant on anything of ours
        region = region_of(conn, "X")
        rogue.execute(ROGUE_HOLDS[holds].format(account_class=ACCOUNT_CLASS, region_class=REGION_CLASS, region=region))

        signup = guarded(connect, autocommit=True)
        customer = insert_customer_at_once(conn, signup, "X")
        at_once(conn, signup, "UPDATE public.customers SET zuora_account_id = ' X ' WHERE id = %s", (mover,))

        assert memberships_of(conn, {customer, mover}) == set()
        assert skips(conn) == [(customer, "INSERT", "account_contended"), (mover, "UPDATE", "account_contended")]
        assert queued(conn) == [(customer, "account_contended"), (mover, "account_contended")]
        held = repair(conn)  # the repair does not wait for the rogue either
        assert (held["left_ids"], held["still_queued"]) == (sorted([customer, mover]), 2)
        assert "X" not in accounts(conn)

        rogue.execute("SELECT pg_advisory_unlock_all()")
        code, out, err = run_cli(capsys, db_url, "heal", "--once", "--max-seconds", "10")
        assert code == 0, err
        assert "the queue is empty" in out
    assert memberships_of(conn, {customer, mover}) == {(customer, "X"), (mover, "X")}
    assert_exact(conn)


def test_a_role_without_grants_holding_a_region_shared_stalls_no_bulk_import(conn, connect, db_url):
    """The shared region does not touch single claims at all; a bulk statement (region claims) skips only the
    accounts of that region, without waiting, and the repair brings them once the rogue lets go."""
    flag_on(conn)
    region = region_of(conn, "IMP-1")
    with role_without_grants(conn, db_url) as rogue_url, psycopg.connect(rogue_url, autocommit=True) as rogue:
        rogue.execute("SELECT pg_advisory_lock_shared(%s, %s)", (REGION_CLASS, region))
        writer = guarded(connect, autocommit=True)
        single = insert_customer_at_once(conn, writer, "IMP-1")  # a single claim: the region shared, compatible
        assert memberships_of(conn, {single}) == {(single, "IMP-1")}
        at_once(conn, writer, import_statement(600))  # region claims: IMP-1's region is the rogue's
        in_region = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM public.customers WHERE id <> %s AND billing_sync.claim_region(zuora_account_id) = %s",
                (single, region),
            )
        }
        assert in_region
        assert {c for c, _, reason in skips(conn) if reason == "account_contended"} == in_region - {
            c for c, _ in memberships(conn)
        }
        assert {c for c, _ in queued(conn)} <= in_region
        assert len(memberships(conn)) == 601 - len(queued(conn))
        assert "IMP-1" in accounts(conn)
    done = repair(conn)  # the rogue's session is gone (its role was dropped)
    assert (done["left_ids"], done["still_queued"]) == ([], 0)
    assert_exact(conn)
    assert len(memberships(conn)) == 601


# --- 3. drift that nothing repaired ---------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
@pytest.mark.parametrize("new_value", ["B1", None])
def test_a_snapshot_older_than_a_backfill_batch_changes_the_customer_and_the_repair_ends_the_stale_membership(
    conn, connect, capsys, db_url, isolation, new_value
):
    ids = add_customers(conn, ["A1", "A1", "C1"])  # the flag is off: nothing synced yet
    set_gates(conn, everyone=True)
    old = guarded(connect, isolation=isolation)
    old.execute("SELECT count(*) FROM public.customers")  # its snapshot is taken now
    code, _, err = run_cli(capsys, db_url, "backfill")
    assert code == 0, err
    assert memberships(conn) == {(ids[0], "A1"), (ids[1], "A1"), (ids[2], "C1")}

    at_once(conn, old, "UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (new_value, ids[0]))
    added = at_once(
        conn,
        old,
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('rr@example.com', 'D1') RETURNING id",
    )[0][0]
    old.commit()  # no serialization failure, no error of any kind

    assert (ids[0], "A1") in memberships(conn)  # stale until the repair
    assert queued(conn) == [(ids[0], "snapshot_isolation"), (added, "snapshot_isolation")]
    done = repair(conn)
    assert (done["customers"], done["left_ids"], done["still_queued"]) == (2, [], 0)
    expected = {(ids[1], "A1"), (ids[2], "C1"), (added, "D1")} | ({(ids[0], new_value)} if new_value else set())
    assert memberships(conn) == expected
    assert_exact(conn)


def open_run(conn: psycopg.Connection) -> int:
    """A run row as sync_admin/backfill.py `_open_run` starts one."""
    row = conn.execute(
        "INSERT INTO billing_sync.backfill_runs (max_id, total, actor)"
        " SELECT max(id), count(*), 'test' FROM public.customers RETURNING id"
    ).fetchone()
    assert row is not None
    return row[0]


def batch(conn: psycopg.Connection, run_id: int, size: int) -> dict:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute("SELECT * FROM billing_sync.backfill_batch(%s, %s)", (run_id, size))
        .fetchone()
    )
    assert row is not None
    return row


@pytest.mark.parametrize("resume", ["sql", "cli"])
def test_a_backfill_interrupted_at_10_percent_and_resumed_after_the_flag_went_to_everyone_syncs_everyone(
    conn, capsys, db_url, resume
):
    ids = add_customers(conn, mixed_values(1000, seed=11))  # the flag is off: nothing synced yet
    set_gates(conn, percentage=10)
    run_id = open_run(conn)
    for _ in range(3):
        assert batch(conn, run_id, 100)["status"] == "running"
    assert conn.execute("SELECT last_id FROM billing_sync.backfill_runs WHERE id = %s", (run_id,)).fetchone() == (
        ids[299],
    )
    first_range = set(ids[:300])
    synced_early = {c for c, _ in expected_memberships(conn) if c in first_range}
    assert memberships_of(conn, first_range) == {m for m in expected_memberships(conn) if m[0] in first_range}

    set_gates(conn, everyone=True)  # the cohort grows behind the run's last_id
    newly = {m for m in expected_memberships(conn) if m[0] in first_range and m[0] not in synced_early}
    assert newly, "the first range must hold customers that joined the cohort after it was done"

    if resume == "sql":
        statuses = []
        for _ in range(100):
            run = batch(conn, run_id, 100)
            statuses.append(run["status"])
            if run["status"] == "finished":
                break
            # Not finished: something of the current cohort is still to do (the range, the sweep).
        assert statuses[-1] == "finished" and statuses.count("finished") == 1
        assert run["scanned"] == 1000 and run["last_id"] == ids[-1]
    else:
        code, out, err = run_cli(capsys, db_url, "backfill", "--batch-size", "100")
        assert code == 0, err
        assert f"resumed run #{run_id}" in out
        assert conn.execute("SELECT status FROM billing_sync.backfill_runs WHERE id = %s", (run_id,)).fetchone() == (
            "finished",
        )
    assert newly <= memberships(conn)
    drift = {item: count for item, count, *_ in conn.execute("SELECT * FROM billing_sync.account_drift(0)")}
    assert drift["in_rollout"] == 1000
    assert {item: count for item, count in drift.items() if item not in ("in_rollout", "sync_skip")} == {
        "missing_billing_account": 0,
        "missing_membership": 0,
        "stale_membership": 0,
        "duplicate_or_orphan_membership": 0,
    }
    assert_exact(conn)
    code, _, err = run_cli(capsys, db_url, "verify")
    assert code == 0, err


def test_a_backfill_beside_a_transaction_holding_a_customer_exits_1_then_finishes_after_it_commits(
    conn, connect, capsys, db_url
):
    ids = add_customers(conn, [f"A{i % 7}" for i in range(50)])  # the flag is off: nothing synced yet
    set_gates(conn, everyone=True)
    holder = guarded(connect)
    at_once(conn, holder, "UPDATE public.customers SET email = 'held@example.com' WHERE id = %s", (ids[20],))

    code, out, err = run_cli(capsys, db_url, "backfill", "--settle-seconds", "1", "--batch-size", "10")

    assert code == 1, out
    assert len(err.strip().splitlines()) == 1, err
    assert "1 customers of the rollout are still out of their derived state" in err, err
    assert memberships_of(conn, set(ids)) == {(c, f"A{i % 7}") for i, c in enumerate(ids) if c != ids[20]}
    assert queued(conn) == [(ids[20], "backfill_left")]
    run = conn.execute("SELECT status, busy FROM billing_sync.backfill_runs").fetchall()
    assert run[0][0] == "running" and run[0][1] >= 1

    holder.commit()
    code, out, err = run_cli(capsys, db_url, "backfill")
    assert code == 0, err
    assert [status for (status,) in conn.execute("SELECT status FROM billing_sync.backfill_runs")] == ["finished"]
    assert_exact(conn)


# --- 4. the row as it ends up ------------------------------------------------------------------------------

REWRITE = """
CREATE FUNCTION public.rewrite_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.customers SET zuora_account_id = 'FINAL'
    WHERE id = NEW.id AND zuora_account_id IS DISTINCT FROM 'FINAL';
    RETURN NULL;
END $$;
CREATE TRIGGER {name} AFTER INSERT OR UPDATE OF zuora_account_id ON public.customers
    FOR EACH ROW EXECUTE FUNCTION public.rewrite_account();
"""

DROP_ON_WRITE = """
CREATE FUNCTION public.drop_unwanted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM public.customers WHERE id = NEW.id AND email LIKE 'drop%';
    RETURN NULL;
END $$;
CREATE TRIGGER {name} AFTER INSERT OR UPDATE ON public.customers
    FOR EACH ROW EXECUTE FUNCTION public.drop_unwanted();
"""

WRITES = {
    "single-row insert": "INSERT INTO public.customers (email, zuora_account_id) VALUES ('one@example.com', 'ORIG-1')",
    "multi-row insert": "INSERT INTO public.customers (email, zuora_account_id)"
    " SELECT 'c' || g || '@example.com', 'ORIG-' || (g % 3) FROM generate_series(1, 6) g",
    "single-row update": "UPDATE public.customers SET zuora_account_id = 'ORIG-1'"
    " WHERE id = (SELECT min(id) FROM public.customers)",
    "multi-row update": "UPDATE public.customers SET zuora_account_id = 'ORIG-' || id",
}


@pytest.mark.parametrize("write", WRITES, ids=list(WRITES))
@pytest.mark.parametrize("trigger", ["a_rewrite", "z_rewrite"])
def test_a_value_rewritten_by_an_application_trigger_is_synced_to_its_final_value(conn, trigger, write):
    flag_on(conn)
    before = add_customers(conn, ["START-1", "START-2", None])
    assert memberships(conn) == {(before[0], "START-1"), (before[1], "START-2")}
    conn.execute(REWRITE.format(name=trigger))
    names = [
        name
        for (name,) in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.customers'::regclass AND NOT tgisinternal"
        )
    ]
    assert sorted(names)[0 if trigger == "a_rewrite" else -1] == trigger  # it fires before (after) the sync's

    conn.execute(WRITES[write])

    final = {c for (c,) in conn.execute("SELECT id FROM public.customers WHERE zuora_account_id = 'FINAL'")}
    assert final  # the application's trigger did rewrite
    expected = {(c, "FINAL") for c in final} | {
        (c, raw)
        for c, raw in conn.execute("SELECT id, zuora_account_id FROM public.customers")
        if raw and c not in final
    }
    assert memberships(conn) == expected
    assert not {a for _, a in memberships(conn)} & {"ORIG-0", "ORIG-1", "ORIG-2"}
    assert skips(conn) == []
    assert_exact(conn)


DELETING_WRITES = {
    "single-row insert": (
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('drop@example.com', 'GONE-1')",
        set(),
    ),
    "multi-row insert": (
        "INSERT INTO public.customers (email, zuora_account_id) SELECT CASE WHEN g % 2 = 0 THEN 'drop' ELSE 'keep' END"
        " || g || '@example.com', CASE WHEN g % 3 = 0 THEN 'GONE-1' ELSE 'KEPT-' || g END FROM generate_series(1, 6) g",
        {"KEPT-1", "KEPT-5", "GONE-1"},  # rows 1, 3, 5 are kept: KEPT-1, GONE-1 (3), KEPT-5
    ),
    "single-row update": (
        "UPDATE public.customers SET zuora_account_id = 'GONE-2', email = 'drop@example.com'"
        " WHERE id = (SELECT min(id) FROM public.customers)",
        set(),
    ),
    "multi-row update": (
        "UPDATE public.customers SET zuora_account_id = 'GONE-' || id,"
        " email = CASE WHEN id % 2 = 0 THEN 'drop@example.com' ELSE email END",
        None,  # computed from the rows left
    ),
}


@pytest.mark.parametrize("write", DELETING_WRITES, ids=list(DELETING_WRITES))
@pytest.mark.parametrize("trigger", ["a_drop", "z_drop"])
def test_a_row_deleted_by_an_application_trigger_is_skipped_without_a_foreign_key_error(conn, trigger, write):
    flag_on(conn)
    before = add_customers(conn, ["START-1", "START-2"])
    conn.execute(DROP_ON_WRITE.format(name=trigger))
    statement, _ = DELETING_WRITES[write]

    conn.execute(statement)  # no foreign key error

    left = dict(conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall())
    assert not conn.execute("SELECT count(*) FROM public.customers WHERE email LIKE 'drop%'").fetchone()[0]
    assert memberships(conn) == {(c, raw) for c, raw in left.items() if raw}
    if write == "single-row insert":
        assert memberships(conn) == {(before[0], "START-1"), (before[1], "START-2")}
        assert "GONE-1" not in accounts(conn)  # nothing is created for a row that is gone
    if write == "multi-row insert":
        assert {a for c, a in memberships(conn) if c not in before} == DELETING_WRITES[write][1]
    if write == "single-row update":
        assert memberships(conn) == {(before[1], "START-2")}
    assert skips(conn) == []
    assert_exact(conn)


# --- 5. the backfill never makes a customer transaction its deadlock victim ---------------------------------


@pytest.mark.parametrize("order", ["held before wanted", "held after wanted"])
def test_a_backfill_batch_skips_the_customer_a_transaction_holds_and_never_closes_a_cycle_with_it(
    conn, connect, threads, order
):
    ids = add_customers(conn, [f"A{i}" for i in range(20)])  # the flag is off: all out of state once it is on
    set_gates(conn, everyone=True)
    x, y = (ids[5], ids[12]) if order == "held before wanted" else (ids[12], ids[5])
    customer_tx, backfill_tx = guarded(connect), guarded(connect)
    backfill_tx.execute("SET lock_timeout = '500ms'")  # as sync-admin backfill runs its batches
    backfill_tx.commit()
    run_id = open_run(conn)

    at_once(conn, customer_tx, "UPDATE public.customers SET email = 'x@example.com' WHERE id = %s", (x,))
    run = at_once(
        conn, backfill_tx, "SELECT status, busy, last_id FROM billing_sync.backfill_batch(%s, 100)", (run_id,)
    )[0]
    assert run == ("running", 1, ids[-1])  # X left (busy), the batch's own transaction still open
    pending = threads.submit(
        customer_tx.execute, "UPDATE public.customers SET zuora_account_id = 'T-NEW' WHERE id = %s", (y,)
    )
    wait_until_blocked(conn, customer_tx)  # it waits for the batch's short transaction only
    backfill_tx.commit()
    assert not isinstance(outcome(pending), Exception)
    customer_tx.commit()

    assert memberships_of(conn, {x}) == set()  # left by the batch
    assert queued(conn) == [(x, "backfill_left")]
    assert memberships_of(conn, {y}) == {(y, "T-NEW")}
    for _ in range(10):  # the sweep repairs X
        if batch(conn, run_id, 100)["status"] == "finished":
            break
    assert conn.execute("SELECT status FROM billing_sync.backfill_runs").fetchone() == ("finished",)
    assert memberships_of(conn, {x}) == {(x, "A5" if x == ids[5] else "A12")}
    assert_exact(conn)


# --- 6. partitioned customers ----------------------------------------------------------------------------------

PARTITIONED = """
CREATE TABLE public.customers (
    id bigint NOT NULL PRIMARY KEY,
    email text NOT NULL,
    zuora_account_id text
) PARTITION BY RANGE (id);
CREATE TABLE public.customers_low PARTITION OF public.customers FOR VALUES FROM (MINVALUE) TO (1000);
CREATE TABLE public.customers_high PARTITION OF public.customers FOR VALUES FROM (1000) TO (MAXVALUE);
INSERT INTO public.customers VALUES (1, 'a@example.com', 'A-1'), (2000, 'b@example.com', 'B-2');
"""
INHERITED = """
CREATE TABLE public.customers (id bigint PRIMARY KEY, email text NOT NULL, zuora_account_id text);
CREATE TABLE public.customers_archive () INHERITS (public.customers);
"""
NOT_PARTITIONED_MESSAGE = (
    "error: migration failed and its revision was rolled back: public.customers cannot be synced: it is partitioned"
    " (or inherits or is inherited), and billing-sync does not sync writes to partitions or rows moved between them"
)


def nothing_installed(url: str) -> bool:
    with psycopg.connect(url) as check:
        row = check.execute(
            "SELECT to_regnamespace('billing_sync') IS NULL AND to_regclass('public.billing_accounts') IS NULL"
            " AND to_regclass('public.billing_account_memberships') IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM pg_trigger"
            "                 WHERE tgrelid = 'public.customers'::regclass AND NOT tgisinternal)"
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("ddl", [PARTITIONED, INHERITED], ids=["partitioned", "inherited"])
def test_adopting_a_partitioned_customers_table_is_refused_with_one_line_and_nothing_installed(
    conn, db_url, capsys, ddl
):
    with fresh_database(conn, db_url, ddl) as url:
        code, out, err = run_cli(capsys, url, "db", "upgrade")
        assert code == 1, out
        assert err.startswith(NOT_PARTITIONED_MESSAGE), err
        assert err.count("\n") == 1, err
        assert migrate.current(url) is None
        assert nothing_installed(url)


def test_a_customers_table_that_became_inherited_under_0006_is_refused_by_0007(conn, db_url, capsys):
    with fresh_database(conn, db_url) as url:
        migrate.upgrade(url, "0006")
        with psycopg.connect(url, autocommit=True) as setup:
            setup.execute("CREATE TABLE public.customers_archive () INHERITS (public.customers)")
        code, out, err = run_cli(capsys, url, "db", "upgrade")
        assert code == 1, out
        assert err.startswith(NOT_PARTITIONED_MESSAGE), err
        assert err.count("\n") == 1, err
        assert migrate.current(url) == "0006"
        with psycopg.connect(url) as check:
            assert check.execute("SELECT to_regclass('billing_sync.sync_repairs')").fetchone() == (None,)


# --- 7. skip reasons say what happened ---------------------------------------------------------------------

CONTENDED_WRITES = ["single-row insert", "multi-row insert", "single-row update", "multi-row update"]


@pytest.mark.parametrize("holder_ends", ["commit", "rollback"])
@pytest.mark.parametrize("write", CONTENDED_WRITES)
def test_a_claim_held_by_another_open_transaction_is_recorded_as_contended_never_unresolved(
    conn, connect, write, holder_ends
):
    flag_on(conn)
    existing = add_customers(conn, ["OLD", "OLD"])
    holder, writer = guarded(connect), guarded(connect)
    owner = insert_customer(holder, "NEW-1")  # holds the claim on NEW-1, its account row uncommitted

    if write == "single-row insert":
        rows = at_once(
            conn,
            writer,
            "INSERT INTO public.customers (email, zuora_account_id) VALUES ('w@example.com', ' NEW-1') RETURNING id",
        )
        contended, operation = [r[0] for r in rows], "INSERT"
    elif write == "multi-row insert":
        rows = at_once(
            conn,
            writer,
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'w' || g || '@example.com', v FROM unnest(ARRAY['NEW-1', 'NEW-2', 'NEW-1']) WITH ORDINALITY"
            " AS t(v, g) ORDER BY g RETURNING id, zuora_account_id",
        )
        contended, operation = [r[0] for r in rows if r[1] == "NEW-1"], "INSERT"
    elif write == "single-row update":
        at_once(conn, writer, "UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (existing[0],))
        contended, operation = [existing[0]], "UPDATE"
    else:
        at_once(conn, writer, "UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = ANY(%s)", (existing,))
        contended, operation = list(existing), "UPDATE"
    writer.commit()
    assert sorted(skips(conn)) == sorted((c, operation, "account_contended") for c in contended)
    assert sorted(queued(conn)) == sorted((c, "account_contended") for c in contended)
    if holder_ends == "commit":
        holder.commit()
    else:
        holder.rollback()

    assert not [s for s in skips(conn) if s[2] == "account_unresolved"]
    done = repair(conn)
    assert (done["left_ids"], done["still_queued"]) == ([], 0)
    assert {(c, "NEW-1") for c in contended} <= memberships(conn)
    assert ((owner, "NEW-1") in memberships(conn)) == (holder_ends == "commit")
    assert_exact(conn)


SUPPRESSORS = {
    "rule": "CREATE RULE swallow AS ON INSERT TO public.billing_account_memberships DO INSTEAD NOTHING",
    "trigger": "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';"
    " CREATE TRIGGER swallow BEFORE INSERT ON public.billing_account_memberships"
    " FOR EACH ROW EXECUTE FUNCTION public.swallow()",
}


@pytest.mark.parametrize("write", ["single-row insert", "multi-row insert", "single-row update"])
@pytest.mark.parametrize("suppressor", SUPPRESSORS, ids=list(SUPPRESSORS))
def test_a_membership_insert_suppressed_by_a_rule_or_trigger_is_recorded_as_membership_unwritten(
    conn, suppressor, write
):
    flag_on(conn)
    existing = insert_customer(conn, "A1")
    conn.execute(SUPPRESSORS[suppressor])
    if write == "single-row insert":
        customers = [insert_customer(conn, "A1")]
        operation = "INSERT"
    elif write == "multi-row insert":
        customers = add_customers(conn, ["A1", "B2"])
        operation = "INSERT"
    else:
        conn.execute("UPDATE public.customers SET zuora_account_id = 'B2' WHERE id = %s", (existing,))
        customers = [existing]
        operation = "UPDATE"
    assert skips(conn) == [(c, operation, "membership_unwritten") for c in customers]
    assert memberships_of(conn, set(customers)) == set()


ACCOUNT_SUPPRESSORS = {
    "rule": "CREATE RULE swallow AS ON INSERT TO public.billing_accounts DO INSTEAD NOTHING",
    "trigger": "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';"
    " CREATE TRIGGER swallow BEFORE INSERT ON public.billing_accounts FOR EACH ROW EXECUTE FUNCTION public.swallow()",
}


@pytest.mark.parametrize("write", ["single-row insert", "multi-row insert", "single-row update"])
@pytest.mark.parametrize("suppressor", ACCOUNT_SUPPRESSORS, ids=list(ACCOUNT_SUPPRESSORS))
def test_an_account_insert_suppressed_by_a_rule_or_trigger_is_recorded_as_account_unresolved(conn, suppressor, write):
    """The one case that is not contention: this transaction held the claim and still nothing exists."""
    flag_on(conn)
    existing = insert_customer(conn, "A1")
    conn.execute(ACCOUNT_SUPPRESSORS[suppressor])
    if write == "single-row insert":
        customers, operation = [insert_customer(conn, "NEW-1")], "INSERT"
    elif write == "multi-row insert":
        customers, operation = add_customers(conn, ["NEW-1", "NEW-2"]), "INSERT"
    else:
        conn.execute("UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (existing,))
        customers, operation = [existing], "UPDATE"
    assert skips(conn) == [(c, operation, "account_unresolved") for c in customers]
    assert memberships_of(conn, set(customers)) == set()
    assert queued(conn) == []  # nothing a repair could do better


# --- one statement, 100,000 new accounts --------------------------------------------------------------------


def test_one_statement_creating_100000_new_accounts_succeeds_with_constant_xids_and_bounded_locks(conn, connect):
    flag_on(conn)
    bulk = guarded(connect)
    bulk.execute("SET statement_timeout = '180s'")  # a hang guard: 100,000 rows take seconds on a loaded machine
    bulk.commit()
    before = next_xid(conn)
    at_once(
        conn,
        bulk,
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'bulk' || g || '@example.com', 'BULK-' || g FROM generate_series(1, 100000) g",
    )
    rows, objects = advisory_locks(conn, bulk)
    assert objects <= 512 and rows <= 512, (rows, objects)
    used = own_xids(bulk, conn, before)
    bulk.commit()
    assert used <= 20, used
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM public.billing_accounts),"
        " (SELECT count(*) FROM public.billing_account_memberships),"
        " (SELECT count(*) FROM billing_sync.sync_events), (SELECT count(*) FROM billing_sync.sync_repairs)"
    ).fetchone()
    assert counts == (100000, 100000, 0, 0)
    assert verify.check(conn).clean


@pytest.mark.slow(10)
def test_fifty_open_transactions_creating_accounts_row_by_row_never_fill_the_lock_table(conn, connect):
    """Every transaction's claims hold at most half of max_locks_per_transaction (billing_sync.claim_regions), so
    open transactions creating accounts cannot fill the shared lock table, and no customer write fails with "out
    of shared memory". Revision 0007 (256 claims, then 256 regions: up to 512 locks a transaction) failed the
    47th of these transactions on a server with the default 100 connections and 64 locks per transaction."""
    flag_on(conn)
    budget = claim_budget(conn)
    share = conn.execute("SELECT current_setting('max_locks_per_transaction')::integer").fetchone()[0]
    assert 2 * budget <= share // 2 + 1
    writers = [guarded(connect) for _ in range(50)]
    for number, writer in enumerate(writers):
        for row in range(256):
            writer.execute(
                "INSERT INTO public.customers (email, zuora_account_id) VALUES ('s@example.com', %s)",
                (f"ROW-{number}-{row}",),
            )
        rows, objects = advisory_locks(conn, writer)
        assert objects <= 2 * budget, (number, rows, objects)
    for writer in writers:
        writer.commit()
    # What a writer found claimed by an open one was queued; the repair brings it now that all have ended.
    while repair(conn)["still_queued"]:
        pass
    assert_exact(conn)
    assert len(memberships(conn)) == 50 * 256


def test_one_update_moving_3000_customers_to_new_accounts_holds_bounded_locks(conn, connect):
    """Row by row: the budget of single claims, then whole regions: at most half of max_locks_per_transaction."""
    flag_on(conn)
    add_customers(conn, [f"S{i % 5}" for i in range(3000)])
    bulk = guarded(connect)
    at_once(conn, bulk, "UPDATE public.customers SET zuora_account_id = 'MOVED-' || id")
    rows, objects = advisory_locks(conn, bulk)
    assert objects <= 2 * claim_budget(conn), (rows, objects)
    bulk.commit()
    assert skips(conn) == [] and queued(conn) == []
    assert_exact(conn)
