"""`sync-admin heal`: the repair service makes the sync converge without a person (issue 11).

What the sync has to leave is queued in billing_sync.sync_repairs in the customer write's transaction; the
service repairs it once the transaction holding it has ended. These tests run the real service as a process
against a real database, with real concurrent sessions holding what it must not wait for.
"""

from __future__ import annotations

import re
import time

import psycopg
import pytest
from helpers import flag_on, insert_customer, memberships, queued, run_cli, session
from sync_state import expected_memberships as derived_memberships
from test_watch import WatchProcess

WAIT_SECONDS = 30  # an upper bound for the service to reach a state; never an assertion on speed


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


@pytest.fixture
def heal_service(db_url):
    started: list[WatchProcess] = []

    def start(*args: str) -> WatchProcess:
        process = WatchProcess(db_url, args=("heal", *args))
        started.append(process)
        process.wait_for(r"heal: repairing the queue billing_sync.sync_repairs on ")
        return process

    yield start
    for process in started:
        process.kill()


def contended_customer(conn, connect, account: str = "NEW-1"):
    """A customer whose new account another open transaction is creating: (its id, the creator's session)."""
    creator = session(connect)
    insert_customer(creator, account)  # holds the claim on the account until it ends
    customer = insert_customer(conn, account)  # left: the sync never waits for the creator
    return customer, creator


def test_the_service_repairs_a_contended_customer_once_the_creator_commits(conn, connect, heal_service):
    flag_on(conn)
    service = heal_service("--poll", "60")  # a long poll: only the notification and the retries can wake it
    customer, creator = contended_customer(conn, connect)
    assert queued(conn) == [(customer, "account_contended")]
    time.sleep(0.3)  # the service has tried by now, and left it: the creator still holds the claim
    assert (customer, "NEW-1") not in memberships(conn)
    creator.commit()
    service.wait_for(r"heal: repaired 1 customers \(accounts \+0, memberships \+1 -0\); 0 queued")
    assert memberships(conn) == derived_memberships(conn)
    assert queued(conn) == []
    code, out, _ = service.interrupt()
    assert code == 0
    assert out.strip().endswith("stopped; 1 customers repaired")


def test_the_queue_is_the_truth_when_no_notification_comes(conn, connect, heal_service):
    """Any session can suppress or fake notifications: the service polls the table."""
    flag_on(conn)
    service = heal_service("--poll", "0.2")
    customer = insert_customer(conn, "A-1")
    conn.execute("DELETE FROM billing_account_memberships")
    conn.execute(  # queued by hand: no notification is sent
        "INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id) VALUES (%s, 'backfill_left', 1)",
        (customer,),
    )
    conn.execute("NOTIFY billing_sync_repairs, '{\"transaction_id\": Infinity}'")  # garbage wakes, never stops it
    service.wait_for(r"heal: repaired 1 customers")
    assert memberships(conn) == {(customer, "A-1")}


def test_a_customer_held_by_a_long_transaction_does_not_starve_the_others(conn, connect, db_url):
    flag_on(conn)
    held = [insert_customer(conn, f"A-{i}") for i in range(3)]
    free = [insert_customer(conn, f"B-{i}") for i in range(3)]
    conn.execute("DELETE FROM billing_account_memberships")
    conn.execute(
        "INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id)"
        " SELECT unnest(%s::bigint[]), 'backfill_left', 1",
        (held + free,),
    )
    holder = session(connect)
    holder.execute("SELECT 1 FROM customers WHERE id = ANY(%s) FOR UPDATE", (held,))
    from sync_admin import heal

    with psycopg.connect(db_url, autocommit=True) as repairer:
        result = heal.drain(repairer, batch_size=2, max_seconds=0.5)  # two at a time: the held ones come first
    assert result.still_queued == 3 and result.repaired == 3
    assert memberships(conn) == {(c, f"B-{i}") for i, c in enumerate(free)}
    holder.rollback()


def test_heal_once_exits_1_with_one_line_while_customers_are_held_then_0(conn, connect, capsys, db_url):
    flag_on(conn)
    _, creator = contended_customer(conn, connect)
    code, _, err = run_cli(capsys, db_url, "heal", "--once", "--max-seconds", "0.2")
    assert code == 1
    assert re.fullmatch(
        r"error: heal: 1 repairs still queued after \d+\.\ds: their customers are held by open transactions"
        r" \(pg_stat_activity shows them\); run `sync-admin heal --once` again when they have ended, or keep"
        r" `sync-admin heal` running",
        err.strip(),
    ), err
    creator.commit()
    code, out, _ = run_cli(capsys, db_url, "heal", "--once")
    assert code == 0
    assert re.fullmatch(r"heal: repaired 1 customers in \d+\.\ds; the queue is empty", out.strip()), out
    assert memberships(conn) == derived_memberships(conn)


def test_a_second_service_is_refused_and_watch_heal_runs_one(conn, connect, capsys, db_url, heal_service):
    flag_on(conn)
    heal_service()
    code, _, err = run_cli(capsys, db_url, "heal", "--once")
    assert code == 1
    assert err.strip() == (
        "error: another `sync-admin heal` (or `watch --heal`) is running on this database; one is enough:"
        " nothing started"
    )


def test_watch_heal_prints_the_skip_and_repairs_it(conn, connect, db_url):
    flag_on(conn)
    process = WatchProcess(db_url, args=("watch", "--heartbeat", "5", "--heal"))
    try:
        process.wait_for(r"watching channel billing_sync_skips")
        customer, creator = contended_customer(conn, connect)
        process.wait_for(rf"skip account_contended: customer {customer} ")
        creator.commit()
        process.wait_for(r"heal: repaired 1 customers")
        assert memberships(conn) == derived_memberships(conn)
    finally:
        process.kill()


def test_the_flag_off_for_a_queued_customer_means_nothing_to_do(conn, connect, capsys, db_url):
    """The repair syncs as the trigger would now: a customer the flag is now off for is done, untouched."""
    flag_on(conn)
    customer, creator = contended_customer(conn, connect)
    creator.commit()
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = false")
    code, _, _ = run_cli(capsys, db_url, "heal", "--once")
    assert code == 0
    assert queued(conn) == []
    assert (customer, "NEW-1") not in memberships(conn)


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--poll", "0"], ["--max-seconds", "-1"]])
def test_bad_input_exits_2_with_one_line(conn, capsys, db_url, args):
    code, _, err = run_cli(capsys, db_url, "heal", "--once", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
