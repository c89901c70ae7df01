"""Customer writes under REPEATABLE READ and SERIALIZABLE (issue 11): the sync reads and writes nothing from
an old snapshot, so it can neither fail such a transaction nor write a stale state; it queues the customers,
and the repair brings them to their derived state after the commit. Memberships follow a customer's delete
and id change without the cascading foreign key that failed such transactions.
"""

from __future__ import annotations

import itertools

import psycopg
import pytest
from helpers import flag_on, insert_customer, memberships, queued, repair, run_cli
from sync_state import expected_memberships


def snapshot_session(connect, level: str) -> psycopg.Connection:
    session = connect(autocommit=False)
    session.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
    session.execute("SELECT 1").fetchone()  # the snapshot is taken here; nothing is read (no SSI predicate lock)
    return session


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_serializable_signups_commit_in_every_order_with_the_sync_on(conn, connect, order):
    """A plain INSERT reads nothing; had the sync read customers or the billing tables, SSI would fail one."""
    flag_on(conn)
    for i in range(50):
        insert_customer(conn, f"OLD-{i % 5}")
    sessions = [snapshot_session(connect, "SERIALIZABLE") for _ in range(3)]
    ids = [insert_customer(session, f"NEW-{n}") for n, session in enumerate(sessions)]
    for index in order:
        sessions[index].commit()  # none may raise
    assert repair(conn) == 0
    assert {(c, a) for c, a in memberships(conn) if c in ids} == {(c, f"NEW-{n}") for n, c in enumerate(ids)}


def test_a_repeatable_read_write_older_than_the_flag_flip_is_queued_and_repaired(conn, connect, capsys, db_url):
    customer = insert_customer(conn, "ACC-A")
    old = snapshot_session(connect, "REPEATABLE READ")  # sees the flag off
    flag_on(conn)
    assert run_cli(capsys, db_url, "backfill")[0] == 0
    old.execute("UPDATE customers SET zuora_account_id = 'ACC-B' WHERE id = %s", (customer,))
    old.commit()
    assert queued(conn) == [(customer, "snapshot_isolation")]
    assert repair(conn) == 0
    assert memberships(conn) == {(customer, "ACC-B")}


def test_a_repeatable_read_delete_after_a_repair_commits_and_its_memberships_go(conn, connect):
    flag_on(conn)
    customer = insert_customer(conn, "ACC-A")
    conn.execute("DELETE FROM billing_account_memberships")
    conn.execute(
        "INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id) VALUES (%s, 'backfill_left', 1)",
        (customer,),
    )
    deleter = snapshot_session(connect, "REPEATABLE READ")
    assert repair(conn) == 0  # writes the membership after the deleter's snapshot
    deleter.execute("DELETE FROM customers WHERE id = %s", (customer,))
    deleter.commit()  # with the foreign key's cascade this was a serialization failure
    assert memberships(conn) == {(customer, "ACC-A")}  # left to the repair, which runs after the commit
    assert repair(conn) == 0
    assert memberships(conn) == set()


def test_an_id_change_under_repeatable_read_keeps_the_memberships_of_a_customer_the_flag_is_off_for(conn, connect):
    flag_on(conn)
    customer = insert_customer(conn, "ACC-1")
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = false")
    mover = connect(autocommit=False)
    mover.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    mover.execute("UPDATE customers SET id = 1001 WHERE id = %s", (customer,))
    mover.commit()
    assert repair(conn) == 0
    assert memberships(conn) == {(1001, "ACC-1")}


def test_an_id_change_into_an_id_with_orphaned_memberships_succeeds(conn, connect):
    flag_on(conn)
    gone, moving = insert_customer(conn, "ACC-S"), insert_customer(conn, "ACC-S")
    deleter = connect(autocommit=False)
    deleter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    deleter.execute("DELETE FROM customers WHERE id = %s", (gone,))
    deleter.commit()  # its membership (gone, ACC-S) waits for the repair
    conn.execute("UPDATE customers SET id = %s WHERE id = %s", (gone, moving))  # READ COMMITTED: no unique violation
    assert memberships(conn) == {(gone, "ACC-S")}
    assert repair(conn) == 0
    assert memberships(conn) == expected_memberships(conn)


def test_a_queued_repair_follows_an_id_change(conn, connect):
    flag_on(conn)
    customer = insert_customer(conn, "OLD")
    creator = connect(autocommit=False)
    insert_customer(creator, "NEW-1")  # holds the claim on NEW-1
    conn.execute("UPDATE customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (customer,))  # contended
    conn.execute("UPDATE customers SET id = 1001 WHERE id = %s", (customer,))
    creator.commit()
    assert repair(conn) == 0
    assert (1001, "NEW-1") in memberships(conn)
    assert memberships(conn) == expected_memberships(conn)


def test_truncate_of_customers_takes_the_memberships_along(conn):
    flag_on(conn)
    insert_customer(conn, "ACC-A")
    conn.execute("TRUNCATE customers RESTART IDENTITY")
    assert memberships(conn) == set()
    customer = insert_customer(conn, "ACC-NEW")  # the same id as before: it inherits nothing
    assert memberships(conn) == {(customer, "ACC-NEW")}


def test_heal_and_backfill_work_when_the_database_defaults_to_repeatable_read(conn, capsys, db_url):
    conn.execute(f"ALTER DATABASE {conn.info.dbname} SET default_transaction_isolation = 'repeatable read'")
    other = psycopg.connect(db_url, autocommit=True)
    try:
        flag_on(other)
        customer = insert_customer(other, "ACC-A")  # a repeatable read write: queued
        assert queued(other) == [(customer, "snapshot_isolation")]
        code, _, err = run_cli(capsys, db_url, "heal", "--once")
        assert code == 0, err
        assert memberships(other) == {(customer, "ACC-A")}
        insert_customer(other, "ACC-B")
        code, _, err = run_cli(capsys, db_url, "backfill")
        assert code == 0, err
        assert memberships(other) == expected_memberships(other)
    finally:
        other.close()
        conn.execute(f"ALTER DATABASE {conn.info.dbname} RESET default_transaction_isolation")
