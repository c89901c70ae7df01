"""The sync's semantics, row by row of the issue's table, on the real triggers.

While account_data_persistence is on, a customer's memberships are exactly the one derived
from its zuora_account_id: surrounding ASCII white space trimmed, empty means none, and a
value that is not 1-64 characters of [A-Za-z0-9_.-] is skipped. Billing accounts are
created when missing, never duplicated, never updated and never deleted by the sync.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from helpers import accounts, flag_off, flag_on, insert_customer, memberships

BILLING_TABLES = ("billing_accounts", "billing_account_memberships")
ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def derive(raw: str | None) -> str | None:
    """The issue's rule, independently of the SQL: the account a raw value stands for."""
    if raw is None:
        return None
    trimmed = raw.strip(" \t\n\r\x0b\x0c")
    return trimmed if ACCOUNT.fullmatch(trimmed) else None


def set_account(conn: psycopg.Connection, customer: int, raw: str | None) -> None:
    conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE id = %s", (raw, customer))


def billing_rows(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every billing row with its physical identity: a rewrite changes xmin or ctid."""
    return {
        "accounts": conn.execute(
            "SELECT id, zuora_account_id, created_at, updated_at, xmin::text, ctid::text"
            " FROM public.billing_accounts ORDER BY id"
        ).fetchall(),
        "memberships": conn.execute(
            "SELECT id, billing_account_id, customer_id, created_at, updated_at, xmin::text, ctid::text"
            " FROM public.billing_account_memberships ORDER BY id"
        ).fetchall(),
    }


def tuple_counts(conn: psycopg.Connection) -> dict[str, tuple[int, int, int]]:
    rows = conn.execute(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables"
        " WHERE schemaname = 'public' AND relname = ANY(%s)",
        (list(BILLING_TABLES),),
    ).fetchall()
    return {name: (ins, upd, dele) for name, ins, upd, dele in rows}


def billing_writes(conn: psycopg.Connection, statement: str, params: tuple = ()) -> dict[str, tuple[int, int, int]]:
    """Run one statement in its own transaction: (inserted, updated, deleted) tuples per billing table.

    Both counts are read inside that transaction, where pg_stat_xact_user_tables cannot be flushed,
    so the difference is exactly what the statement (and the triggers it fired) wrote.
    """
    with conn.transaction():
        before = tuple_counts(conn)
        conn.execute(statement, params)
        after = tuple_counts(conn)
    return {name: tuple(a - b for a, b in zip(after[name], before[name], strict=True)) for name in BILLING_TABLES}


NO_WRITES = {name: (0, 0, 0) for name in BILLING_TABLES}


# --- insert ---------------------------------------------------------------------------------------


def test_insert_with_account_creates_the_account_and_the_membership(conn):
    flag_on(conn)
    customer = insert_customer(conn, "Z-100")
    assert accounts(conn) == {"Z-100"}
    assert memberships(conn) == {(customer, "Z-100")}


def test_insert_with_an_existing_account_joins_it_without_a_duplicate(conn):
    flag_on(conn)
    first = insert_customer(conn, "Z-100")
    account_before = billing_rows(conn)["accounts"]
    second = insert_customer(conn, "Z-100", email="second@example.com")
    third = insert_customer(conn, " Z-100\t", email="third@example.com")
    assert billing_rows(conn)["accounts"] == account_before
    assert memberships(conn) == {(first, "Z-100"), (second, "Z-100"), (third, "Z-100")}


def test_one_statement_inserting_many_customers_of_a_new_account_creates_it_once(conn):
    flag_on(conn)
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c' || g || '@example.com', CASE WHEN g % 2 = 0 THEN 'SHARED' ELSE ' SHARED ' END"
        " FROM generate_series(1, 50) g"
    )
    assert conn.execute("SELECT count(*) FROM public.billing_accounts").fetchone() == (1,)
    assert len(memberships(conn)) == 50
    assert accounts(conn) == {"SHARED"}


NORMALISED = {
    "Z1": "Z1",
    " Z1 ": "Z1",
    "\tZ2\n": "Z2",
    "\r\n Z3 \r\n": "Z3",
    "\x0bZ4\x0c": "Z4",  # vertical tab and form feed are ASCII white space too
    "vZ5v": "vZ5v",  # the letters t, n, r, v, f are not white space
    "tnrvf": "tnrvf",
    "2c92a0fe5a1b2c3d4e5f60718293a4b5": "2c92a0fe5a1b2c3d4e5f60718293a4b5",
    "A00001234": "A00001234",
    "a.b-c_D9": "a.b-c_D9",
    "-": "-",
    "x" * 64: "x" * 64,
    "   " + "y" * 64 + "   ": "y" * 64,
}

NOT_ACCOUNTS = [
    "bad value",
    "x" * 65,
    "Z1!",
    "Z/1",
    "Z1;",
    "Z\u00a01",
    "\u00a0Z1\u00a0",  # NO-BREAK SPACE is not ASCII white space: not trimmed, not an account
    "\u2003Z1",
    "\uff3a\uff11",  # full-width Z1
    "\u00dcn\u00efc\u00f8d\u00e9",
    "Z1\x01",
    "\x7fZ1",
    "'; DROP TABLE public.billing_accounts; --",
]


def test_insert_normalises_the_account(conn):
    assert {raw: derive(raw) for raw in NORMALISED} == NORMALISED  # the Python model agrees with the table
    flag_on(conn)
    customers = {insert_customer(conn, raw): raw for raw in NORMALISED}
    assert {customer: account for customer, account in memberships(conn)} == {
        customer: NORMALISED[raw] for customer, raw in customers.items()
    }
    assert accounts(conn) == set(NORMALISED.values())
    # the customers' own values are stored as written
    assert dict(conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall()) == customers


def test_insert_without_an_account_writes_nothing(conn):
    flag_on(conn)
    for raw in [None, "", " ", "   ", "\t\n\r\x0b\x0c "]:
        writes = billing_writes(
            conn, "INSERT INTO public.customers (email, zuora_account_id) VALUES ('c@example.com', %s)", (raw,)
        )
        assert writes == NO_WRITES, repr(raw)
    assert accounts(conn) == set() and memberships(conn) == set()


def test_insert_with_a_value_that_is_not_an_account_is_skipped(conn):
    assert [raw for raw in NOT_ACCOUNTS if derive(raw) is not None] == []
    flag_on(conn)
    customers = {insert_customer(conn, raw): raw for raw in NOT_ACCOUNTS}
    assert memberships(conn) == set()
    assert accounts(conn) == set()
    assert dict(conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall()) == customers


# --- update ---------------------------------------------------------------------------------------


def test_update_to_another_account_moves_the_membership_and_keeps_the_old_account(conn):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    old_account = conn.execute("SELECT id, xmin::text FROM public.billing_accounts").fetchone()
    set_account(conn, customer, "Y-2")
    assert memberships(conn) == {(customer, "Y-2")}
    assert accounts(conn) == {"Z-1", "Y-2"}
    assert conn.execute(
        "SELECT id, xmin::text FROM public.billing_accounts WHERE zuora_account_id = 'Z-1'"
    ).fetchone() == tuple(old_account)


def test_update_to_an_existing_account_joins_it(conn):
    flag_on(conn)
    owner = insert_customer(conn, "Y-2")
    customer = insert_customer(conn, "Z-1", email="other@example.com")
    accounts_before = billing_rows(conn)["accounts"]
    set_account(conn, customer, "\tY-2 ")
    assert billing_rows(conn)["accounts"] == accounts_before
    assert memberships(conn) == {(owner, "Y-2"), (customer, "Y-2")}


def test_update_to_no_account_removes_the_membership_and_keeps_the_account(conn):
    flag_on(conn)
    stays = insert_customer(conn, "Z-1", email="stays@example.com")
    leaving = {insert_customer(conn, "Z-1"): raw for raw in [None, "", "   ", "bad value", "x" * 65, "\u00dcn\u00ef"]}
    for customer, raw in leaving.items():
        set_account(conn, customer, raw)
    assert memberships(conn) == {(stays, "Z-1")}
    assert accounts(conn) == {"Z-1"}


def test_update_from_no_account_to_an_account_adds_the_membership(conn):
    flag_on(conn)
    customer = insert_customer(conn, None)
    set_account(conn, customer, " A-7 ")
    assert memberships(conn) == {(customer, "A-7")}


def test_update_from_a_skipped_value_to_an_account_adds_the_membership(conn):
    flag_on(conn)
    customer = insert_customer(conn, "not an account")
    set_account(conn, customer, "A-7")
    assert memberships(conn) == {(customer, "A-7")}


def test_measurement_sees_the_writes_of_a_real_change(conn):
    """Positive control for the no-write tests below: the same measurement sees a move."""
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    writes = billing_writes(conn, "UPDATE public.customers SET zuora_account_id = 'Y-2' WHERE id = %s", (customer,))
    assert writes == {"billing_accounts": (1, 0, 0), "billing_account_memberships": (1, 0, 1)}


def test_update_that_keeps_the_normalised_account_writes_nothing(conn):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    neighbour = insert_customer(conn, "Z-1", email="neighbour@example.com")
    rows_before = billing_rows(conn)
    for assignment in [
        "email = 'new@example.com'",
        "first_name = 'Ada', last_name = 'Lovelace', company = 'ACME'",
        "zuora_account_id = zuora_account_id",
        "zuora_account_id = 'Z-1'",
        "zuora_account_id = ' Z-1 '",
        "zuora_account_id = E'\\tZ-1\\n'",
        "zuora_account_id = E'\\x0bZ-1\\x0c', email = 'both@example.com'",
        "zuora_account_id = 'Z-1', updated_at = now()",
    ]:
        writes = billing_writes(conn, f"UPDATE public.customers SET {assignment} WHERE id = %s", (customer,))
        assert writes == NO_WRITES, assignment
        assert billing_rows(conn) == rows_before, assignment
    assert memberships(conn) == {(customer, "Z-1"), (neighbour, "Z-1")}


def test_bulk_update_that_keeps_every_normalised_account_writes_nothing(conn):
    flag_on(conn)
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c' || g || '@example.com', 'A' || (g % 10) FROM generate_series(1, 500) g"
    )
    rows_before = billing_rows(conn)
    writes = billing_writes(
        conn, "UPDATE public.customers SET zuora_account_id = ' ' || zuora_account_id || E'\\t', email = 'x' || email"
    )
    assert writes == NO_WRITES
    assert billing_rows(conn) == rows_before


def test_update_that_keeps_the_account_does_not_consume_membership_ids(conn):
    """An unchanged account must leave the billing tables alone, their identity sequences included.

    INSERT ... ON CONFLICT DO NOTHING evaluates the identity default before it finds the
    conflict, so an 'already a member' insert burns a membership id (and WAL) for nothing.
    """
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    sequence = "SELECT last_value FROM public.billing_account_memberships_id_seq"
    before = conn.execute(sequence).fetchone()
    set_account(conn, customer, " Z-1 ")
    set_account(conn, customer, "Z-1")
    assert conn.execute(sequence).fetchone() == before


# --- delete ---------------------------------------------------------------------------------------


def test_delete_removes_the_memberships_and_keeps_the_accounts(conn):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    other = insert_customer(conn, "Z-1", email="other@example.com")
    conn.execute("DELETE FROM public.customers WHERE id = %s", (customer,))
    assert memberships(conn) == {(other, "Z-1")}
    conn.execute("DELETE FROM public.customers")
    assert memberships(conn) == set()
    assert accounts(conn) == {"Z-1"}


@pytest.mark.parametrize("flag", ["on", "off"])
def test_delete_cascades_whatever_the_flag(conn, flag):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    if flag == "off":
        flag_off(conn)
    conn.execute("DELETE FROM public.customers WHERE id = %s", (customer,))
    assert memberships(conn) == set()
    assert accounts(conn) == {"Z-1"}


# --- customer id changes (ON UPDATE CASCADE) ------------------------------------------------------


@pytest.mark.parametrize("flag", ["on", "off"])
def test_changing_a_customer_id_carries_its_membership(conn, flag):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    if flag == "off":
        flag_off(conn)
    conn.execute("UPDATE public.customers SET id = 1000 WHERE id = %s", (customer,))
    assert memberships(conn) == {(1000, "Z-1")}


def test_changing_a_customer_id_and_its_account_in_one_statement(conn):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    conn.execute("UPDATE public.customers SET id = 2000, zuora_account_id = 'Y-2' WHERE id = %s", (customer,))
    assert memberships(conn) == {(2000, "Y-2")}
    assert accounts(conn) == {"Z-1", "Y-2"}


# --- other ways of writing customers --------------------------------------------------------------


def test_upsert_merge_and_copy_are_synced_like_inserts_and_updates(conn):
    flag_on(conn)
    customer = insert_customer(conn, "Z-1")
    conn.execute(
        "INSERT INTO public.customers (id, email, zuora_account_id) VALUES (%s, 'c@example.com', 'U-1')"
        " ON CONFLICT (id) DO UPDATE SET zuora_account_id = EXCLUDED.zuora_account_id",
        (customer,),
    )
    assert memberships(conn) == {(customer, "U-1")}
    conn.execute(
        "MERGE INTO public.customers c USING (VALUES (%s::bigint, ' M-1 ')) AS s(id, account) ON c.id = s.id"
        " WHEN MATCHED THEN UPDATE SET zuora_account_id = s.account",
        (customer,),
    )
    assert memberships(conn) == {(customer, "M-1")}
    with conn.cursor() as cur, cur.copy("COPY public.customers (email, zuora_account_id) FROM STDIN") as copy:
        copy.write_row(("copied@example.com", "\tC-1\n"))
        copy.write_row(("skipped@example.com", "not an account"))
    copied = conn.execute("SELECT id FROM public.customers WHERE email = 'copied@example.com'").fetchone()[0]
    assert memberships(conn) == {(customer, "M-1"), (copied, "C-1")}


# --- the flag -------------------------------------------------------------------------------------


def test_while_the_flag_is_off_writes_succeed_and_the_billing_tables_are_untouched(conn):
    flag_on(conn)
    kept = insert_customer(conn, "Z-1")
    flag_off(conn)
    rows_before = billing_rows(conn)
    statements = [
        ("INSERT INTO public.customers (email, zuora_account_id) VALUES ('n@example.com', 'NEW-1')", ()),
        ("INSERT INTO public.customers (email, zuora_account_id) VALUES ('n@example.com', 'bad value')", ()),
        ("UPDATE public.customers SET zuora_account_id = 'Y-2' WHERE id = %s", (kept,)),
        ("UPDATE public.customers SET zuora_account_id = NULL WHERE id = %s", (kept,)),
        ("UPDATE public.customers SET zuora_account_id = 'NEW-2'", ()),
    ]
    for statement, params in statements:
        assert billing_writes(conn, statement, params) == NO_WRITES, statement
    assert billing_rows(conn) == rows_before
    assert memberships(conn) == {(kept, "Z-1")}  # stale: not maintained while off
    assert conn.execute("SELECT count(*) FROM public.customers").fetchone() == (3,)


def test_turning_the_flag_back_on_syncs_the_next_write(conn):
    flag_off(conn)
    customer = insert_customer(conn, "Z-1")
    assert memberships(conn) == set()
    flag_on(conn)
    set_account(conn, customer, "Y-2")
    assert memberships(conn) == {(customer, "Y-2")}
    assert accounts(conn) == {"Y-2"}


def test_a_flag_flip_by_another_session_applies_to_the_next_statement_of_this_one(conn, connect):
    app = connect()  # one long-lived application session, never reconnected
    admin = connect()
    insert = "INSERT INTO public.customers (email, zuora_account_id) VALUES (%s, %s) RETURNING id"

    def add(account: str) -> int:
        return app.execute(insert, ("c@example.com", account)).fetchone()[0]

    flag_off(admin)
    # more executions than psycopg's prepare threshold: the statement is prepared server-side
    unsynced = [add(f"OFF-{i}") for i in range(8)]
    flag_on(admin)
    on_first = add("ON-1")
    assert memberships(conn) == {(on_first, "ON-1")}
    flag_off(admin)
    add("OFF-9")
    assert memberships(conn) == {(on_first, "ON-1")}

    # inside an open READ COMMITTED transaction too: the very next statement sees the flip
    with app.transaction():
        before_flip = add("TX-1")
        flag_on(admin)
        after_flip = add("TX-2")
    assert memberships(conn) == {(on_first, "ON-1"), (after_flip, "TX-2")}
    assert before_flip not in {c for c, _ in memberships(conn)}
    assert not set(unsynced) & {c for c, _ in memberships(conn)}


# --- a scripted sequence against the derived set --------------------------------------------------


def derived_memberships(conn: psycopg.Connection) -> set[tuple[int, str]]:
    rows = conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall()
    return {(customer, derive(raw)) for customer, raw in rows if derive(raw) is not None}


def test_after_a_mixed_sequence_of_writes_memberships_are_exactly_the_derived_set(conn):
    flag_on(conn)
    values = ["A1", " A1 ", "B2", "", "  ", None, "bad value", "x" * 65, "\t C3\n", "x" * 64, "\x0bD4"]
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id) SELECT 'c' || i || '@example.com', v"
        " FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, i)",
        (values,),
    )
    assert memberships(conn) == derived_memberships(conn)
    conn.execute(
        "UPDATE public.customers SET zuora_account_id = CASE WHEN id % 3 = 0 THEN NULL"
        " WHEN id % 3 = 1 THEN ' B2' ELSE zuora_account_id || 'x' END"
    )
    assert memberships(conn) == derived_memberships(conn)
    conn.execute("DELETE FROM public.customers WHERE id % 4 = 0")
    conn.execute("UPDATE public.customers SET zuora_account_id = 'E5' WHERE id % 5 = 0")
    conn.execute("UPDATE public.customers SET email = 'same@example.com'")
    assert memberships(conn) == derived_memberships(conn)
    assert accounts(conn) >= {account for _, account in derived_memberships(conn)}
    # no account twice
    assert conn.execute(
        "SELECT count(*) = count(DISTINCT zuora_account_id) FROM public.billing_accounts"
    ).fetchone() == (True,)


def test_the_account_rule_in_sql_agrees_with_the_reference_on_every_boundary(conn):
    """billing_sync.normalize_zuora_account_id (v2 since revision 0008: a length check and a `+` class instead of
    the slow bounded repetition {1,64}) against derive(), over lengths 0-66 with every kind of character at the
    first, a middle and the last position, padded with every blank."""
    blanks = [" ", "\t", "\n", "\r", "\x0b", "\x0c"]
    odd = [" ", "\t", "\n", "é", "ä", "\x01", "!", "/", "\u00a0", "\u2028", "\uff21", "0", "_", ".", "-"]
    values: list[str | None] = [None]
    for length in (0, 1, 2, 63, 64, 65, 66):
        base = "a" * length
        values.append(base)
        values += [blank + base + blank for blank in blanks]
        for char in odd:
            for position in {0, length // 2, max(length - 1, 0)}:
                values.append(base[:position] + char + base[position + 1 :])
    rows = conn.execute(
        "SELECT v, billing_sync.normalize_zuora_account_id(v) FROM unnest(%s::text[]) AS u(v)", (values,)
    ).fetchall()
    assert len(rows) == len(values)
    assert [(value, derived) for value, derived in rows if derived != derive(value)] == []
