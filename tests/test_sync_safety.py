"""The sync must never hurt a customer write: bad values, bulk statements, unrelated updates,
concurrent sessions, an application role without rights, and a hostile search_path.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from helpers import (
    accounts,
    flag_off,
    flag_on,
    insert_customer,
    memberships,
    outcome,
    queued,
    repair,
    session,
    xids_used_by,
)
from psycopg import errors, sql

ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def derive(raw: str | None) -> str | None:
    if raw is None:
        return None
    trimmed = raw.strip(" \t\n\r\x0b\x0c")
    return trimmed if ACCOUNT.fullmatch(trimmed) else None


def derived_memberships(conn: psycopg.Connection) -> set[tuple[int, str]]:
    rows = conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall()
    return {(customer, derive(raw)) for customer, raw in rows if derive(raw) is not None}


# --- no value can make a customer write fail --------------------------------------------------------

CONTROL_CHARACTERS = "".join(chr(c) for c in [*range(1, 32), 127])  # NUL cannot be stored in text
NASTY_VALUES = [
    "",
    " ",
    "\t\n\r\x0b\x0c",
    " " * 10_000,
    "x" * 10_000,
    "A" * 10_000 + " ",
    " " * 10_000 + "PADDED-1" + "\t" * 10_000,  # an account after trimming
    "\x01",
    "A1\x01",
    "\x01A1",
    "\x7f",
    "A1\x7f",
    CONTROL_CHARACTERS,
    "A1" + CONTROL_CHARACTERS,
    "\x1b[31mred\x1b[0m",
    "\U0001f600",
    "A1\U0001f600",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a ZWJ family emoji
    "\u202eA1",  # RIGHT-TO-LEFT OVERRIDE
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic
    "\u200b",
    "A1\u200b",
    "\ufeffA1",
    "Z\u0351\u0310A\u0337L\u0336G\u0338O",  # combining marks
    "\U0010ffff",
    "\u2028A1\u2029",
    "\u00a0A1\u00a0",
    "%s",
    "%(name)s",
    "\\",
    "'",
    '"',
    "NULL",
    "'; DELETE FROM public.billing_accounts; --",
]


def test_no_value_makes_an_insert_or_an_update_fail(conn):
    flag_on(conn)
    inserted = {insert_customer(conn, value): value for value in NASTY_VALUES}
    updated = {}
    for value in NASTY_VALUES:
        customer = insert_customer(conn, "BEFORE-1")
        conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (value, customer))
        updated[customer] = value
    stored = dict(conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall())
    assert stored == {**inserted, **updated}  # every value stored exactly as written
    assert memberships(conn) == derived_memberships(conn)
    assert {account for _, account in memberships(conn)} == {"PADDED-1", "NULL"}  # 'NULL' is a valid id


def test_no_value_makes_a_bulk_statement_fail(conn):
    flag_on(conn)
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id) SELECT 'c@example.com', v FROM unnest(%s::text[]) v",
        ([*NASTY_VALUES, "A1", " B2 "],),
    )
    assert memberships(conn) == derived_memberships(conn)
    conn.execute(
        "UPDATE public.customers SET zuora_account_id = (%s::text[])[1 + (id %% %s)]",
        (NASTY_VALUES, len(NASTY_VALUES)),
    )
    assert memberships(conn) == derived_memberships(conn)
    conn.execute("DELETE FROM public.customers")
    assert memberships(conn) == set()


# --- transaction ids: no subtransaction per row ----------------------------------------------------

ROWS = 5_000
XID_BUDGET = 20  # a handful per statement; one per row would be ~5,000


def test_the_measurement_counts_one_xid_per_subtransaction(conn):
    """Positive control: an EXCEPTION block entered per row is seen as ~one xid per row."""
    conn.execute("CREATE TEMP TABLE scratch (i int)")
    used = xids_used_by(
        conn,
        "DO $$ BEGIN FOR i IN 1..500 LOOP"
        " BEGIN INSERT INTO scratch VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END;"
        " END LOOP; END $$",
    )
    assert used >= 500


def test_bulk_statements_use_a_constant_number_of_transaction_ids(conn):
    flag_on(conn)
    for statement in [
        "INSERT INTO public.customers (email, zuora_account_id)"
        f" SELECT 'c' || g || '@example.com', 'A' || g FROM generate_series(1, {ROWS}) g",
        "UPDATE public.customers SET zuora_account_id = 'B' || id",  # every row moves to a new account
        "UPDATE public.customers SET zuora_account_id = 'SHARED'",
        "UPDATE public.customers SET zuora_account_id = ' ' || zuora_account_id || ' '",
        "UPDATE public.customers SET zuora_account_id = 'not an account'",
        "UPDATE public.customers SET zuora_account_id = 'C' || (id % 50)",
        "UPDATE public.customers SET email = 'e' || id",
        "DELETE FROM public.customers",
    ]:
        used = xids_used_by(conn, statement)
        assert used <= XID_BUDGET, (statement, used)
        assert memberships(conn) == derived_memberships(conn), statement
    assert conn.execute("SELECT count(*) FROM public.billing_accounts").fetchone() == (2 * ROWS + 51,)


# --- unrelated updates never enter the trigger function ---------------------------------------------


def sync_calls(conn: psycopg.Connection) -> dict[str, int]:
    """Calls of the two sync functions in this transaction: the insert statement trigger, the update row trigger."""
    rows = conn.execute(
        "SELECT funcname, calls FROM pg_stat_xact_user_functions"
        " WHERE schemaname = 'billing_sync' AND funcname IN ('sync_customers_inserted', 'sync_customer_updated')"
    ).fetchall()
    calls = dict(rows)
    return {"inserted": calls.get("sync_customers_inserted", 0), "updated": calls.get("sync_customer_updated", 0)}


def test_updates_that_do_not_change_the_raw_account_value_never_call_the_trigger_function(conn):
    flag_on(conn)
    with conn.transaction():  # pg_stat_xact_user_functions counts this transaction's calls
        conn.execute("SET LOCAL track_functions = 'pl'")
        conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'c' || g || '@example.com', 'A' || (g % 10) FROM generate_series(1, 300) g"
        )
        conn.execute("UPDATE public.customers SET zuora_account_id = 'B' || id")
        # positive controls: inserts are synced once per statement, account changes once per row
        assert sync_calls(conn) == {"inserted": 1, "updated": 300}
        for statement in [
            "UPDATE public.customers SET email = 'new-' || email",
            "UPDATE public.customers SET first_name = 'Ada', company = 'ACME', updated_at = now()",
            "UPDATE public.customers SET zuora_account_id = zuora_account_id",
            "UPDATE public.customers SET zuora_account_id = zuora_account_id, email = 'x@example.com'",
            "DELETE FROM public.customers WHERE id > 290",
        ]:
            conn.execute(statement)
            assert sync_calls(conn) == {"inserted": 1, "updated": 300}, statement


def test_while_the_flag_is_off_no_write_calls_a_sync_function(conn):
    with conn.transaction():
        conn.execute("SET LOCAL track_functions = 'pl'")
        for statement in [
            "INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A1')",
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'c' || g || '@example.com', 'A' || g FROM generate_series(1, 50) g",
            "UPDATE public.customers SET zuora_account_id = 'B' || id",
        ]:
            conn.execute(statement)
            assert sync_calls(conn) == {"inserted": 0, "updated": 0}, statement
    assert memberships(conn) == set()


# --- billing_accounts rows are never updated --------------------------------------------------------


def test_the_sync_never_updates_or_deletes_a_billing_account(conn):
    flag_on(conn)
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c' || g || '@example.com', 'A' || (g % 5) FROM generate_series(1, 200) g"
    )
    snapshot = (
        "SELECT id, zuora_account_id, created_at, updated_at, xmin::text, ctid::text FROM public.billing_accounts"
    )
    before = set(conn.execute(snapshot).fetchall())
    with conn.transaction():
        counts = (
            "SELECT n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables"
            " WHERE relid = 'public.billing_accounts'::regclass"
        )
        start = conn.execute(counts).fetchone()
        for statement in [
            "UPDATE public.customers SET zuora_account_id = 'A' || ((id + 1) % 5)",  # everyone moves
            "UPDATE public.customers SET zuora_account_id = ' A1 ' WHERE id % 2 = 0",
            "UPDATE public.customers SET zuora_account_id = NULL WHERE id % 3 = 0",
            "UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id % 7 = 0",
            "DELETE FROM public.customers WHERE id % 11 = 0",
        ]:
            conn.execute(statement)
        assert conn.execute(counts).fetchone() == start
    after = set(conn.execute(snapshot).fetchall())
    assert before <= after  # every old account row untouched: same xmin, same ctid
    assert {row[1] for row in after - before} == {"NEW-1"}
    assert memberships(conn) == derived_memberships(conn)


# --- concurrent sessions ----------------------------------------------------------------------------


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield pool


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_two_transactions_creating_the_same_new_account_never_wait_and_end_with_one_shared_row(
    conn, connect, first_ends
):
    """The second creator does not wait for the first's uncommitted account (that wait could deadlock it): its
    membership is left, queued, and the repair brings it once the first has ended, however it ended."""
    flag_on(conn)
    first, second = session(connect), session(connect)
    second.execute("SET lock_timeout = '2s'")  # any wait at all would fail the test
    first_customer = insert_customer(first, "NEW-1")  # claims and creates NEW-1, not yet committed
    second_customer = insert_customer(second, " NEW-1 ", "second@example.com")  # returns at once
    second.commit()
    assert queued(conn) == [(second_customer, "account_contended")]
    assert conn.execute("SELECT reason FROM billing_sync.sync_events").fetchall() == [("account_contended",)]
    assert repair(conn) == 1  # the first still holds the claim: left in the queue
    if first_ends == "commit":
        first.commit()
    else:
        first.rollback()
    assert repair(conn) == 0
    expected = {(second_customer, "NEW-1")} | ({(first_customer, "NEW-1")} if first_ends == "commit" else set())
    assert memberships(conn) == expected
    assert conn.execute("SELECT count(*) FROM public.billing_accounts").fetchone() == (1,)


def test_updates_moving_two_customers_to_the_same_new_account_concurrently(conn, connect):
    flag_on(conn)
    one, two = insert_customer(conn, "OLD-1"), insert_customer(conn, "OLD-2")
    first, second = session(connect), session(connect)
    second.execute("SET lock_timeout = '2s'")
    first.execute("UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (one,))
    second.execute("UPDATE public.customers SET zuora_account_id = 'NEW-1' WHERE id = %s", (two,))  # no wait
    second.commit()
    assert memberships(conn) == {(one, "OLD-1")}  # two left its stale membership; one is not committed yet
    first.commit()
    assert repair(conn) == 0
    assert memberships(conn) == {(one, "NEW-1"), (two, "NEW-1")}
    assert accounts(conn) == {"OLD-1", "OLD-2", "NEW-1"}


def test_shared_existing_accounts_in_opposite_order_take_no_conflicting_lock(conn, connect):
    """Joining existing accounts locks no account row: crossing transactions never wait on each other."""
    flag_on(conn)
    customers = [insert_customer(conn, account) for account in ("A", "B", "A", "B")]
    first, second = session(connect), session(connect)
    first.execute("SET lock_timeout = '2s'")  # nothing here may wait at all
    second.execute("SET lock_timeout = '2s'")
    first.execute("UPDATE public.customers SET zuora_account_id = 'B' WHERE id = %s", (customers[0],))
    second.execute("UPDATE public.customers SET zuora_account_id = 'A' WHERE id = %s", (customers[1],))
    a1 = insert_customer(first, "A")
    b2 = insert_customer(second, "B")
    first.execute("UPDATE public.customers SET zuora_account_id = 'A' WHERE id = %s", (customers[3],))
    second.execute("UPDATE public.customers SET zuora_account_id = 'B' WHERE id = %s", (customers[2],))
    first.commit()
    second.commit()
    assert memberships(conn) == {
        (customers[0], "B"),
        (customers[1], "A"),
        (customers[2], "B"),
        (customers[3], "A"),
        (a1, "A"),
        (b2, "B"),
    }
    assert conn.execute("SELECT count(*) FROM public.billing_accounts").fetchone() == (2,)


def test_transactions_creating_two_new_accounts_in_opposite_order_do_not_fail(conn, connect):
    """No customer write may fail because of the sync: without the triggers these two
    transactions do not conflict at all, so the sync must not make them deadlock.

    Each transaction holds the claim on the account it is creating; neither waits for the other's
    (billing_sync.claim_account only tries), so the crossing customers' memberships are queued, and the
    repair brings them once both have committed."""
    flag_on(conn)
    first, second = session(connect), session(connect)
    for connection in (first, second):
        connection.execute("SET deadlock_timeout = '50ms'")
        connection.execute("SET lock_timeout = '2s'")  # any wait at all would fail the test
    a_owner = insert_customer(first, "NEW-A")
    b_owner = insert_customer(second, "NEW-B")
    a_crossing = insert_customer(second, "NEW-A")
    b_crossing = insert_customer(first, "NEW-B")
    first.commit()
    second.commit()
    assert memberships(conn) == {(a_owner, "NEW-A"), (b_owner, "NEW-B")}
    assert conn.execute("SELECT count(*) FROM public.billing_accounts").fetchone() == (2,)
    assert sorted(queued(conn)) == sorted([(a_crossing, "account_contended"), (b_crossing, "account_contended")])

    assert repair(conn) == 0
    assert memberships(conn) == derived_memberships(conn)


def test_a_transaction_that_holds_no_new_account_does_not_wait_for_the_creator_either(conn, connect):
    """0006 waited here (it held no account lock): that wait ignored the row locks the transaction holds."""
    flag_on(conn)
    insert_customer(conn, "OLD")  # committed: joining it creates nothing
    first, second = session(connect), session(connect)
    second.execute("SET lock_timeout = '2s'")
    insert_customer(first, "NEW-A")  # first holds NEW-A
    second_customer = insert_customer(second, "OLD")  # second holds no new account
    second.execute("UPDATE public.customers SET zuora_account_id = 'NEW-A' WHERE id = %s", (second_customer,))
    second.commit()
    first.commit()
    assert repair(conn) == 0
    assert memberships(conn) == derived_memberships(conn)


def test_many_sessions_writing_customers_of_shared_new_accounts(conn, connect, threads):
    flag_on(conn)
    workers = 6
    sessions = [connect() for _ in range(workers)]  # autocommit: one statement, one transaction

    def work(index: int) -> list[int]:
        written = []
        for step in range(40):
            account = f"S{(step * (index + 1)) % 7}"
            written.append(insert_customer(sessions[index], account if step % 3 else f" {account} "))
            if step % 4 == 0:
                sessions[index].execute(
                    "UPDATE public.customers SET zuora_account_id = %s WHERE id = %s",
                    (f"T{(step + index) % 5}", written[-1]),
                )
        return written

    results = [outcome(threads.submit(work, index)) for index in range(workers)]
    assert [r for r in results if not isinstance(r, list)] == []
    assert repair(conn) == 0  # what was contended is queued; nothing is held any more
    assert memberships(conn) == derived_memberships(conn)
    assert conn.execute(
        "SELECT count(*) = count(DISTINCT zuora_account_id) FROM public.billing_accounts"
    ).fetchone() == (True,)


# --- the application role needs no rights, and cannot touch the machinery ---------------------------


@pytest.fixture
def app_role(conn: psycopg.Connection) -> Iterator[str]:
    """A role with exactly what an application has: DML on public.customers and its sequence."""
    name = f"billing_app_{uuid.uuid4().hex[:12]}"
    role = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers TO {}").format(role))
    conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE public.customers_id_seq TO {}").format(role))
    yield name
    conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
    conn.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.fixture
def app(app_role: str, connect: Callable[..., psycopg.Connection]) -> Iterator[psycopg.Connection]:
    """An autocommit session acting as the application role (SET ROLE); closed before the role goes."""
    connection = connect()
    connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(app_role)))
    yield connection
    connection.close()


def test_the_application_role_writes_customers_and_the_sync_follows(conn, app):
    flag_on(conn)
    assert app.execute("SELECT current_user").fetchone()[0] != "postgres"
    first = insert_customer(app, "A-1")
    second = insert_customer(app, " A-1 ")
    third = insert_customer(app, "bad value")
    app.execute("UPDATE public.customers SET zuora_account_id = 'B-2' WHERE id = %s", (second,))
    app.execute("UPDATE public.customers SET zuora_account_id = 'A-1' WHERE id = %s", (third,))
    app.execute("UPDATE public.customers SET id = 500 WHERE id = %s", (first,))
    assert memberships(conn) == {(500, "A-1"), (second, "B-2"), (third, "A-1")}
    app.execute("DELETE FROM public.customers WHERE id = 500")
    assert memberships(conn) == {(second, "B-2"), (third, "A-1")}
    assert accounts(conn) == {"A-1", "B-2"}


FORBIDDEN_TO_THE_APPLICATION = [
    "SELECT * FROM billing_sync.feature_flags",
    "UPDATE billing_sync.feature_flags SET enabled = true",
    "INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('mine', true)",
    "DELETE FROM billing_sync.feature_flags",
    "SELECT * FROM billing_sync.feature_flag_events",
    "SELECT billing_sync.flag_enabled_for('account_data_persistence', 1)",
    "SELECT billing_sync.normalize_zuora_account_id('A1')",
    "INSERT INTO public.billing_accounts (zuora_account_id) VALUES ('FORGED')",
    "UPDATE public.billing_accounts SET zuora_account_id = 'FORGED'",
    "DELETE FROM public.billing_accounts",
    "TRUNCATE public.billing_accounts CASCADE",
    "INSERT INTO public.billing_account_memberships (billing_account_id, customer_id) VALUES (1, 1)",
    "UPDATE public.billing_account_memberships SET customer_id = 1",
    "DELETE FROM public.billing_account_memberships",
]


def test_the_application_role_cannot_read_flags_or_write_billing_tables(conn, app):
    flag_on(conn)
    insert_customer(conn, "A-1")
    state = (
        "SELECT (SELECT array_agg(f) FROM billing_sync.feature_flags f),"
        " (SELECT array_agg(a) FROM public.billing_accounts a),"
        " (SELECT array_agg(m) FROM public.billing_account_memberships m)"
    )
    before = conn.execute(state).fetchone()
    allowed = []
    for statement in FORBIDDEN_TO_THE_APPLICATION:
        try:
            app.execute(statement)
            allowed.append(statement)
        except errors.InsufficientPrivilege as exc:
            assert "permission denied" in str(exc), statement
    assert allowed == []
    assert conn.execute(state).fetchone() == before


HIJACK = """
CREATE TABLE hijack.calls (what text);
CREATE FUNCTION hijack.log(what text) RETURNS void LANGUAGE sql AS 'INSERT INTO hijack.calls VALUES (what)';
CREATE TEMP TABLE billing_accounts (id bigint, zuora_account_id text, created_at timestamptz, updated_at timestamptz);
CREATE TEMP TABLE billing_account_memberships
    (id bigint, billing_account_id bigint, customer_id bigint, created_at timestamptz, updated_at timestamptz);
CREATE TABLE hijack.billing_accounts (LIKE pg_temp.billing_accounts);
CREATE TABLE hijack.billing_account_memberships (LIKE pg_temp.billing_account_memberships);
CREATE TABLE hijack.feature_flags
    (name text, enabled boolean, everyone boolean, percentage int, updated_at timestamptz);
INSERT INTO hijack.feature_flags VALUES ('account_data_persistence', true, true, 100, now());
CREATE FUNCTION hijack.btrim(text, text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM hijack.log('btrim'); RETURN 'HIJACKED'; END $$;
CREATE FUNCTION hijack.normalize_zuora_account_id(text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM hijack.log('normalize'); RETURN 'HIJACKED'; END $$;
CREATE FUNCTION hijack.flag_enabled_for(text, bigint) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM hijack.log('flag_enabled_for'); RETURN true; END $$;
CREATE FUNCTION hijack.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM hijack.log('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR hijack.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hijack.text_eq);
CREATE FUNCTION hijack.textregexeq(text, text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM hijack.log('~'); RETURN true; END $$;
CREATE OPERATOR hijack.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = hijack.textregexeq);
"""


def test_a_hostile_search_path_cannot_redirect_the_sync(conn, app, app_role):
    conn.execute(sql.SQL("CREATE SCHEMA hijack AUTHORIZATION {}").format(sql.Identifier(app_role)))
    app.execute("SET search_path = pg_temp, hijack, pg_catalog, public")
    app.execute(HIJACK)
    # the shadows work for the application's own unqualified names
    assert app.execute("SELECT btrim(' A1 ', ' ')").fetchone() == ("HIJACKED",)
    assert app.execute("SELECT count(*) FROM feature_flags WHERE enabled").fetchone() == (1,)
    app.execute("TRUNCATE hijack.calls")

    flag_off(conn)  # the real flag is off, the application's fake one says on
    app.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('off@example.com', 'OFF-1')")
    assert memberships(conn) == set()

    flag_on(conn)
    first = insert_customer(app, " A-1 ")
    second = insert_customer(app, "B-2")
    third = insert_customer(app, "bad value")
    app.execute("UPDATE public.customers SET zuora_account_id = 'A-1' WHERE id = %s", (second,))
    app.execute("UPDATE public.customers SET zuora_account_id = E'\\tC-3' WHERE id = %s", (third,))
    assert memberships(conn) == {(first, "A-1"), (second, "A-1"), (third, "C-3")}
    assert accounts(conn) == {"A-1", "B-2", "C-3"}
    for shadow in [
        "pg_temp.billing_accounts",
        "pg_temp.billing_account_memberships",
        "hijack.billing_accounts",
        "hijack.billing_account_memberships",
        "hijack.calls",
    ]:
        assert app.execute(f"SELECT count(*) FROM {shadow}").fetchone() == (0,), shadow


def test_nothing_in_the_billing_sync_schema_is_granted_to_public(conn):
    """Defence in depth behind the schema's missing USAGE: no function or table is open to PUBLIC."""
    open_to_public = conn.execute(
        """
        SELECT 'schema ' || n.nspname FROM pg_namespace n
        WHERE n.nspname = 'billing_sync'
          AND EXISTS (SELECT 1 FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a WHERE a.grantee = 0)
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace = 'billing_sync'::regnamespace
          AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE a.grantee = 0)
        UNION ALL
        SELECT 'relation ' || c.oid::regclass::text FROM pg_class c
        WHERE c.relnamespace = 'billing_sync'::regnamespace
          AND EXISTS (SELECT 1 FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE a.grantee = 0)
        ORDER BY 1
        """
    ).fetchall()
    assert open_to_public == []


@pytest.mark.parametrize("count", [20_000, 100_000])
def test_a_bulk_statement_creating_many_new_accounts_holds_a_bounded_number_of_locks(conn, count):
    """One advisory lock per new account would exhaust the shared lock table ("out of shared memory"): past its
    budget of single claims a statement takes the regions instead (billing_sync.claim_accounts): at most
    billing_sync.claim_regions(), a quarter of max_locks_per_transaction."""
    flag_on(conn)
    with conn.transaction():
        conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'bulk' || g || '@example.com', 'BULK-' || g FROM generate_series(1, %s) g",
            (count,),
        )
        held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
            " AND classid IN (7300002, 7300004)"
        ).fetchone()[0]
        assert 0 < held <= conn.execute("SELECT billing_sync.claim_regions()").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM public.billing_account_memberships").fetchone() == (count,)
    assert memberships(conn) == derived_memberships(conn)
