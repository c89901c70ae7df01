"""The kill switch mirror (revision 0006): the schema billing_sync_enabled exists exactly while the kill switch
of account_data_persistence is on, whoever changes the flag and however; the customers triggers follow it;
switching off stays exact inside open transactions; concurrent flag changes never fail; doctor checks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from helpers import FLAG, flag_off, flag_on, insert_customer, memberships, outcome, run_cli, session, wait_until_blocked
from test_doctor import assert_clean, doctor, failures, run_fixes

from sync_admin import migrate, release

MIRROR = "billing_sync_enabled"


def mirror_oid(conn: psycopg.Connection) -> int | None:
    row = conn.execute("SELECT oid::bigint FROM pg_namespace WHERE nspname = %s", (MIRROR,)).fetchone()
    return row[0] if row else None


def mirrored(conn: psycopg.Connection) -> bool:
    return mirror_oid(conn) is not None


def kill_switch(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT enabled FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)).fetchone()[0]


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def test_the_mirror_follows_every_way_of_switching_the_flag(conn, capsys, db_url):
    assert not mirrored(conn)  # the migrations install the flag off
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "30")[0] == 0
    assert mirrored(conn)
    created = mirror_oid(conn)
    # gates move without touching the mirror
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "60")[0] == 0
    conn.execute("UPDATE billing_sync.feature_flags SET everyone = true WHERE name = %s", (FLAG,))
    assert mirror_oid(conn) == created
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC-1")[0] == 0
    assert not mirrored(conn)
    assert run_cli(capsys, db_url, "flag", "resume", FLAG)[0] == 0
    assert mirrored(conn)
    flag_off(conn)  # plain SQL
    assert not mirrored(conn)
    with conn.transaction(force_rollback=True):
        flag_on(conn)
        assert mirrored(conn)
    assert not mirrored(conn)  # rolled back with the flag
    flag_on(conn)
    # Deleting the row by hand is refused before the release (revision 0012): the mirror stays with the flag.
    with pytest.raises(psycopg.errors.ObjectInUse):
        conn.execute("DELETE FROM billing_sync.feature_flags WHERE name = %s", (FLAG,))
    assert mirrored(conn)
    customer = insert_customer(conn, "A1")
    assert memberships(conn) == {(customer, "A1")}


def test_switching_off_is_exact_at_the_next_statement_of_an_open_transaction(conn, connect):
    flag_on(conn)
    app = connect()
    with app.transaction():
        before = insert_customer(app, "A1")
        flag_off(conn)  # another session, committed
        after = insert_customer(app, "A2")
        app.execute("UPDATE public.customers SET zuora_account_id = 'B1' WHERE id = %s", (before,))
    assert memberships(conn) == {(before, "A1")}  # the update after the switch wrote nothing either
    assert after not in {customer for customer, _ in memberships(conn)}


def test_a_transaction_left_unsynced_by_switching_on_is_found_by_verify_and_repaired_by_the_backfill(
    conn, connect, capsys, db_url
):
    # Switching on reaches a session when it takes in catalog changes: at the latest at its next transaction.
    # Whatever a session wrote before that is drift, like any write while the flag was off.
    app = connect()
    with app.transaction():
        written = [insert_customer(app, f"T{i}") for i in range(3)]
        flag_on(conn)
        written.append(insert_customer(app, "T3"))
    after = insert_customer(app, "T4")  # a new transaction sees the switch for certain
    assert (after, "T4") in memberships(conn)
    assert run_cli(capsys, db_url, "backfill")[0] == 0
    code, out, _ = run_cli(capsys, db_url, "verify")
    assert code == 0, out
    assert memberships(conn) == {(customer, f"T{i}") for i, customer in enumerate([*written, after])}


@pytest.mark.parametrize("second", ["enable", "disable"])
def test_concurrent_flag_changes_never_fail_and_leave_the_mirror_in_agreement(conn, connect, threads, second):
    first = session(connect)
    other = session(connect)
    flag_on(first)  # holds the flag row until it commits
    assert mirrored(first)
    change = flag_on if second == "enable" else flag_off
    waiting = threads.submit(lambda: (change(other), other.commit()))
    wait_until_blocked(conn, other)
    first.commit()
    assert outcome(waiting) == (None, None)
    assert mirrored(conn) == kill_switch(conn) == (second == "enable")


def test_switching_off_never_fails_when_someone_put_an_object_in_the_mirror(conn, capsys, db_url):
    flag_on(conn)
    conn.execute(f"CREATE TABLE {MIRROR}.notes (note text)")
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert failures(lines) == [f"FAIL  schema {MIRROR} (mirror of the kill switch of {FLAG}): holds 1 object(s):"
                               " it must stay empty; move them to another schema"]  # fmt: skip
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    flag_off(conn)
    assert not mirrored(conn)
    (kept,) = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'billing_sync_enabled_kept_%'")
    assert notices == [f"schema {MIRROR} was not empty: renamed to {kept[0]}"]
    assert conn.execute(f"SELECT count(*) FROM {kept[0]}.notes").fetchone() == (0,)  # nothing of theirs lost
    insert_customer(conn, "A1")
    assert memberships(conn) == set()


@pytest.mark.parametrize("state", ["dropped while on", "created while off"])
def test_doctor_catches_a_mirror_out_of_step_and_its_fix_restores_the_sync(conn, capsys, db_url, state):
    if state == "dropped while on":
        flag_on(conn)
        conn.execute(f"DROP SCHEMA {MIRROR}")
        lost = insert_customer(conn, "A1")  # the triggers no longer fire
        assert memberships(conn) == set()
    else:
        conn.execute(f"CREATE SCHEMA {MIRROR}")
    code, lines = doctor(capsys, db_url)
    assert code == 1
    (line,) = failures(lines)
    expected = (
        "missing while the flag is enabled" if state == "dropped while on" else "present while the flag is disabled"
    )
    assert line.startswith(f"FAIL  schema {MIRROR} (mirror of the kill switch of {FLAG}): {expected}")
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)
    assert mirrored(conn) == kill_switch(conn)
    if state == "dropped while on":
        conn.execute("UPDATE public.customers SET zuora_account_id = 'B1' WHERE id = %s", (lost,))
        assert memberships(conn) == {(lost, "B1")}


def test_the_mirror_goes_with_a_downgrade_and_comes_back_with_the_upgrade(conn, capsys, db_url):
    flag_on(conn)
    assert run_cli(capsys, db_url, "db", "downgrade", "0005", "--yes")[0] == 0
    assert not mirrored(conn)
    on_v3 = insert_customer(conn, "A1")  # revision 0005's sync reads the flag itself
    assert memberships(conn) == {(on_v3, "A1")}
    # Up to the revision before the release (the release itself retires the mirror with the flag).
    assert run_cli(capsys, db_url, "db", "upgrade", release.PRE_RELEASE_REVISION)[0] == 0
    assert migrate.current(db_url) == release.PRE_RELEASE_REVISION
    assert mirrored(conn)
    on_head = insert_customer(conn, "A2")
    assert memberships(conn) == {(on_v3, "A1"), (on_head, "A2")}


def test_the_mirror_needs_no_privilege_and_holds_nothing(conn):
    flag_on(conn)
    acl, comment = conn.execute(
        "SELECT nspacl, obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (MIRROR,)
    ).fetchone()
    assert acl is None  # nothing granted: to_regnamespace needs no privilege
    assert "exists while account_data_persistence is enabled" in comment


def test_the_kill_switch_works_when_someone_else_owns_the_mirror(conn, capsys, db_url):
    """A role with CREATE on the database can create billing_sync_enabled first (sync_switch v1 then failed the
    kill switch: "must be owner of schema"). The kill switch still switches the flag off for everyone, doctor
    names the owner and its fix, and the fix, run as printed, makes the next kill switch drop the mirror."""
    # A superuser may drop any schema: the sync's functions are owned here by a role that is not one, as a
    # migration owner in production is not.
    database = conn.info.dbname
    conn.execute("CREATE ROLE mirror_squatter NOLOGIN")
    conn.execute("CREATE ROLE sync_owner NOLOGIN")
    conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO sync_owner')
    conn.execute("GRANT USAGE ON SCHEMA billing_sync TO sync_owner")
    conn.execute("GRANT SELECT ON billing_sync.feature_flags TO sync_owner")
    conn.execute("ALTER FUNCTION billing_sync.sync_switch() OWNER TO sync_owner")
    try:
        flag_off(conn)
        conn.execute("CREATE SCHEMA billing_sync_enabled AUTHORIZATION mirror_squatter")
        assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
        customer = insert_customer(conn, "A-1")
        assert memberships(conn) == {(customer, "A-1")}

        code, out, err = run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC-1")
        assert code == 0, err
        assert "OFF: kill switch pulled" in out
        assert mirrored(conn)  # left in place: its owner is not ours
        other = insert_customer(conn, "B-1")  # the sync function runs, reads the flag, writes nothing
        assert memberships(conn) == {(customer, "A-1")} and other

        code, lines = doctor(capsys, db_url)
        assert code == 1
        assert [line for line in failures(lines) if "owned by mirror_squatter, not by" in line]
        conn.execute("ALTER FUNCTION billing_sync.sync_switch() OWNER TO CURRENT_USER")
        run_fixes(lines, db_url)  # the owner
        run_fixes(doctor(capsys, db_url)[1], db_url)  # then, ours, the mirror of a flag that is off goes
        assert_clean(capsys, db_url)
        assert run_cli(capsys, db_url, "flag", "resume", FLAG)[0] == 0
        assert run_cli(capsys, db_url, "flag", "disable", FLAG)[0] == 0
        assert not mirrored(conn)  # ours now: dropped as designed
    finally:
        conn.execute("ALTER FUNCTION billing_sync.sync_switch() OWNER TO CURRENT_USER")
        conn.execute("DROP SCHEMA IF EXISTS billing_sync_enabled")
        conn.execute("DROP ROLE mirror_squatter")
        conn.execute("DROP OWNED BY sync_owner")
        conn.execute("DROP ROLE sync_owner")
