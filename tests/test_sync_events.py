"""Issue 5, recorded never raised: every customer write the sync skips leaves exactly one row in
billing_sync.sync_events, and each statement that recorded skips sends one notification on
billing_sync_skips that points at its events.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from helpers import flag_off, flag_on, insert_customer, memberships, xids_used_by
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from sync_admin import events

ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
BLANKS = " \t\n\r\x0b\x0c"


def derive(raw: str | None) -> str | None:
    """The account a raw value stands for (docs/concepts.md's rule, re-implemented), or None."""
    if raw is None:
        return None
    trimmed = raw.strip(BLANKS)
    return trimmed if ACCOUNT.fullmatch(trimmed) else None


def rejected(raw: str | None) -> bool:
    """Not blank and not an account: the sync skips it and must record it."""
    return raw is not None and raw.strip(BLANKS) != "" and derive(raw) is None


def recorded(conn: psycopg.Connection, customer_ids: list[int] | None = None) -> list[tuple]:
    """(customer_id, operation, reason, value, value_length) of the events, by id."""
    query = "SELECT customer_id, operation, reason, value, value_length FROM billing_sync.sync_events"
    if customer_ids is None:
        return conn.execute(query + " ORDER BY id").fetchall()
    return conn.execute(query + " WHERE customer_id = ANY(%s) ORDER BY id", (customer_ids,)).fetchall()


def expected_event(customer_id: int, operation: str, raw: str) -> tuple:
    return (customer_id, operation, "not_an_account", raw[:200], len(raw))


# --- fuzz: any text, on insert and update ----------------------------------------------------------

# Any text but NUL (text cannot hold it) and lone surrogates (not encodable), up to 20,000 characters,
# mixed with short values drawn from the characters that matter to the rule (white space, controls,
# the account alphabet), so that accounts, padded accounts and near misses all come up often.
CHARACTERS = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
ANY_TEXT = st.text(CHARACTERS, max_size=20_000)
LONG_TEXT = st.text(CHARACTERS, min_size=5_000, max_size=20_000)  # left to itself, hypothesis keeps texts short
RULE_TEXT = st.text(st.sampled_from([*BLANKS, "\x01", "\x7f", "\u00a0", "\u200b", "A", "z", "0", "_", ".", "-", "é"]))
ACCOUNTS = st.from_regex(r"\A[ \t\n]{0,3}[A-Za-z0-9_.-]{1,66}[ \r\x0b\x0c]{0,3}\Z")
VALUES = st.one_of(ANY_TEXT, LONG_TEXT, RULE_TEXT, ACCOUNTS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(VALUES, min_size=1, max_size=6))
def test_any_value_written_is_stored_and_every_rejected_one_has_exactly_one_event(conn, values):
    flag_on(conn)
    # one statement per value, then the same values again as one bulk insert and one bulk update
    inserted = [insert_customer(conn, value) for value in values]
    bulk = [
        row[0]
        for row in conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'bulk@example.com', v FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, n) ORDER BY n RETURNING id",
            (values,),
        )
    ]
    updated = [insert_customer(conn, "BEFORE-1") for _ in values]
    for customer, value in zip(updated, values, strict=True):
        conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (value, customer))
    conn.execute(
        "UPDATE public.customers c SET zuora_account_id = u.v"
        " FROM unnest(%s::bigint[], %s::text[]) AS u(id, v) WHERE c.id = u.id",
        (bulk, list(reversed(values))),  # every bulk customer gets another value (or the same: no trigger)
    )

    ids = inserted + bulk + updated
    stored = dict(conn.execute("SELECT id, zuora_account_id FROM public.customers WHERE id = ANY(%s)", (ids,)))
    assert [stored[i] for i in inserted] == values
    assert [stored[i] for i in updated] == values
    expected = [expected_event(i, "INSERT", v) for i, v in zip(inserted, values, strict=True) if rejected(v)]
    expected += [expected_event(i, "INSERT", v) for i, v in zip(bulk, values, strict=True) if rejected(v)]
    expected += [expected_event(i, "UPDATE", v) for i, v in zip(updated, values, strict=True) if rejected(v)]
    expected += [
        expected_event(i, "UPDATE", new)
        for i, old, new in zip(bulk, values, reversed(values), strict=True)
        if old != new and rejected(new)
    ]
    assert sorted(recorded(conn, ids)) == sorted(expected)
    assert {(c, a) for c, a in memberships(conn) if c in ids} == {
        (i, derive(stored[i])) for i in ids if derive(stored[i]) is not None
    }


def test_the_event_carries_when_who_the_transaction_and_the_value_cut_to_200_characters(conn):
    flag_on(conn)
    conn.execute("SET application_name = 'billing-portal'")
    value = "\x1b[31m" + "x" * 20_000
    with conn.transaction():
        customer = insert_customer(conn, value)
        txid, now, user = conn.execute("SELECT txid_current(), now(), session_user").fetchone()
    row = conn.execute(
        "SELECT customer_id, operation, reason, value, value_length, transaction_id, database_user,"
        " application_name, occurred_at >= %s FROM billing_sync.sync_events",
        (now,),
    ).fetchone()
    assert row == (customer, "INSERT", "not_an_account", value[:200], 20_005, txid, user, "billing-portal", True)


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n\r\x0b\x0c", "A1", " A1 ", "x" * 64, "NULL"])
def test_values_that_are_accounts_or_blank_record_nothing(conn, value):
    flag_on(conn)
    customer = insert_customer(conn, value)
    conn.execute("UPDATE public.customers SET zuora_account_id = 'OTHER-1' WHERE id = %s", (customer,))
    conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (value, customer))
    assert recorded(conn) == []


def test_nothing_is_recorded_for_customers_the_flag_is_off_for(conn):
    flag_off(conn)
    insert_customer(conn, "bad value")
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, percentage = 0, everyone = false")
    insert_customer(conn, "bad value")  # on, but no gate covers the customer
    assert recorded(conn) == []


def test_a_rolled_back_write_leaves_no_event(conn):
    flag_on(conn)
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        insert_customer(conn, "bad value")
        conn.execute("SELECT 1 / 0")
    assert recorded(conn) == []


def test_an_unchanged_normalised_value_and_other_columns_record_nothing(conn):
    flag_on(conn)
    customer = insert_customer(conn, "bad value")
    conn.execute("UPDATE public.customers SET email = 'new@example.com' WHERE id = %s", (customer,))
    conn.execute("UPDATE public.customers SET zuora_account_id = zuora_account_id WHERE id = %s", (customer,))
    assert len(recorded(conn)) == 1


def test_a_bulk_update_records_one_event_per_row_and_burns_no_transaction_id_per_row(conn):
    flag_on(conn)
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c' || g || '@example.com', 'A' || g FROM generate_series(1, 5000) g"
    )
    used = xids_used_by(conn, "UPDATE public.customers SET zuora_account_id = 'not an account ' || id")
    assert used <= 20, used  # one xid per row would be ~5,000 (a subtransaction per row)
    assert conn.execute("SELECT count(*), count(DISTINCT customer_id) FROM billing_sync.sync_events").fetchone() == (
        5000,
        5000,
    )
    assert memberships(conn) == set()


# --- the other reasons -----------------------------------------------------------------------------


def test_a_new_account_another_transaction_is_creating_is_recorded_as_contended(conn, connect):
    flag_on(conn)
    first, second = connect(autocommit=False), connect(autocommit=False)
    for session in (first, second):
        session.execute("SET lock_timeout = '10s'")
    insert_customer(second, "NEW-B")  # second now creates an account of its own
    insert_customer(first, "NEW-A")  # first is creating NEW-A, uncommitted
    customer = insert_customer(second, "NEW-A")  # must not wait on first while holding NEW-B: skipped
    second.commit()
    first.commit()
    assert recorded(conn, [customer]) == [(customer, "INSERT", "account_contended", "NEW-A", 5)]
    assert (customer, "NEW-A") not in memberships(conn)


def test_an_account_insert_suppressed_by_another_trigger_is_recorded_as_unresolved(conn):
    flag_on(conn)
    conn.execute(
        "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';"
        "CREATE TRIGGER swallow BEFORE INSERT ON public.billing_accounts FOR EACH ROW EXECUTE FUNCTION public.swallow()"
    )
    customer = insert_customer(conn, " NEW-1 ")
    assert recorded(conn) == [(customer, "INSERT", "account_unresolved", " NEW-1 ", 7)]
    assert memberships(conn) == set()


def test_a_membership_insert_suppressed_by_another_trigger_is_recorded(conn):
    flag_on(conn)
    conn.execute(
        "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';"
        "CREATE TRIGGER swallow BEFORE INSERT ON public.billing_account_memberships"
        " FOR EACH ROW EXECUTE FUNCTION public.swallow()"
    )
    customer = insert_customer(conn, "A1")
    conn.execute("UPDATE public.customers SET zuora_account_id = 'B2' WHERE id = %s", (customer,))
    assert recorded(conn) == [
        (customer, "INSERT", "membership_unwritten", "A1", 2),
        (customer, "UPDATE", "membership_unwritten", "B2", 2),
    ]


# --- notifications: one per statement ---------------------------------------------------------------


@pytest.fixture
def listener(connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    session = connect()
    session.execute(f"LISTEN {events.CHANNEL}")
    return session


def received(listener: psycopg.Connection) -> list[dict]:
    """The notifications delivered so far (they arrive at commit; the writer's commit has returned)."""
    listener.execute("SELECT 1")  # a round trip: anything already sent has been read by then
    return [json.loads(n.payload) for n in listener.notifies(timeout=0.2)]


def test_a_statement_that_skips_many_rows_sends_one_notification(conn, listener):
    flag_on(conn)
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c@example.com', 'bad ' || g FROM generate_series(1, 300) g"
    )
    (notification,) = received(listener)
    pointer = events.parse_pointer(json.dumps(notification))
    pointed = list(events.pointed(conn, pointer))
    assert [event.value for event in pointed] == [f"bad {g}" for g in range(1, 301)]
    assert {event.transaction_id for event in pointed} == {pointer.transaction_id}


def test_each_statement_of_a_transaction_sends_its_own_notification(conn, listener):
    flag_on(conn)
    with conn.transaction():
        conn.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('a', 'bad 1'), ('b', 'bad 2')")
        conn.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('c', 'A1')")  # no skip
        conn.execute("UPDATE public.customers SET zuora_account_id = 'bad 3' WHERE email = 'c'")
        conn.execute("UPDATE public.customers SET email = 'x' WHERE email = 'a'")  # no skip
        conn.execute("UPDATE public.customers SET zuora_account_id = 'worse ' || id")
    notifications = received(listener)
    ids = [row[0] for row in conn.execute("SELECT id FROM billing_sync.sync_events ORDER BY id")]
    assert len(ids) == 6  # 2 + 1 + 3
    assert [n["first_event_id"] for n in notifications] == [ids[0], ids[2], ids[3]]
    assert len({n["transaction_id"] for n in notifications}) == 1


def test_no_notification_without_a_skip_or_after_a_rollback(conn, listener):
    flag_on(conn)
    insert_customer(conn, "A1")
    conn.execute("UPDATE public.customers SET email = 'x'")
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        insert_customer(conn, "bad value")
        conn.execute("SELECT 1 / 0")
    assert received(listener) == []


def test_a_forged_marker_setting_is_ignored_without_failing_the_write(conn, listener):
    flag_on(conn)
    conn.execute("SET billing_sync.pending_skip_event = 'not a number'")
    insert_customer(conn, "A1")
    assert received(listener) == []


# --- the application role ---------------------------------------------------------------------------


@pytest.fixture
def app(conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]) -> Iterator[psycopg.Connection]:
    """A session as a role with only DML on customers, and a search_path full of its own objects."""
    name = f"billing_app_{uuid.uuid4().hex[:12]}"
    role = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers TO {}").format(role))
    conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE public.customers_id_seq TO {}").format(role))
    conn.execute(sql.SQL("CREATE SCHEMA hijack AUTHORIZATION {}").format(role))
    session = connect()
    session.execute(sql.SQL("SET ROLE {}").format(role))
    session.execute(
        "CREATE FUNCTION hijack.pg_notify(text, text) RETURNS void LANGUAGE sql AS 'SELECT NULL';"
        "CREATE TABLE hijack.sync_events (id bigint);"
        "SET search_path = hijack, pg_catalog, public"
    )
    yield session
    session.close()
    conn.execute("DROP SCHEMA hijack CASCADE")
    conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
    conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_the_application_role_records_skips_and_notifies_without_any_right_on_them(conn, app, listener):
    flag_on(conn)
    customer = insert_customer(app, "bad value")
    assert recorded(conn) == [(customer, "INSERT", "not_an_account", "bad value", 9)]
    assert len(received(listener)) == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM billing_sync.sync_events")
