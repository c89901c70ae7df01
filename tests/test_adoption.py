"""Adopting an existing customers table: the portal's own table, with its rows, made before the first
`upgrade head`. The migrations install the sync around it, never change or drop it, and refuse a
table the sync cannot work with, saying what to change, with nothing installed."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from helpers import flag_on, memberships, run_cli
from pgtools import PORTAL_CUSTOMERS, fresh_database

from sync_admin import migrate, release

CUSTOMER_COLUMNS = """
    SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers'
    ORDER BY ordinal_position
"""
CUSTOMER_ROWS = "SELECT md5(string_agg(c::text, ',' ORDER BY id)), count(*) FROM public.customers c"


@pytest.fixture
def portal(conn, db_url) -> Iterator[tuple[str, psycopg.Connection]]:
    with fresh_database(conn, db_url, PORTAL_CUSTOMERS) as url, psycopg.connect(url, autocommit=True) as portal_conn:
        yield url, portal_conn


def test_an_existing_customers_table_is_adopted_with_its_rows(capsys, portal):
    url, portal_conn = portal
    columns, rows = portal_conn.execute(CUSTOMER_COLUMNS).fetchall(), portal_conn.execute(CUSTOMER_ROWS).fetchone()

    # Up to the release: the rollout on the adopted table is still to come (the release refuses before it).
    code, out, err = run_cli(capsys, url, "db", "upgrade", release.PRE_RELEASE_REVISION)
    assert (code, err) == (0, ""), out
    assert migrate.current(url) == release.PRE_RELEASE_REVISION
    # The table is left exactly as it was, and not marked as ours.
    assert portal_conn.execute(CUSTOMER_COLUMNS).fetchall() == columns
    assert portal_conn.execute(CUSTOMER_ROWS).fetchone() == rows
    assert portal_conn.execute("SELECT obj_description('public.customers'::regclass, 'pg_class')").fetchone() == (None,)
    # Since 0007 the memberships follow their customer by triggers, not a foreign key (it failed deletes under
    # snapshot isolation): none references the portal's table.
    assert portal_conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE confrelid = 'public.customers'::regclass"
    ).fetchone() == (0,)

    # The sync works on it (a varchar account column included).
    assert memberships(portal_conn) == set()
    flag_on(portal_conn)
    portal_conn.execute("UPDATE public.customers SET zuora_account_id = ' B-9 ' WHERE id = 1")
    new = portal_conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('new@example.com', 'A-1') RETURNING id"
    ).fetchone()
    assert new is not None
    assert memberships(portal_conn) == {(1, "B-9"), (new[0], "A-1")}
    in_rollout = portal_conn.execute(
        "SELECT count(*) FROM billing_sync.customers_in_rollout('account_data_persistence')"
    ).fetchone()
    assert in_rollout == (41,)


def test_downgrading_to_base_keeps_an_adopted_customers_table_and_its_rows(capsys, portal):
    url, portal_conn = portal
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)
    rows = portal_conn.execute(CUSTOMER_ROWS).fetchone()

    code, out, err = run_cli(capsys, url, "db", "downgrade", "base", "--yes")
    assert (code, err) == (0, ""), out
    assert portal_conn.execute(CUSTOMER_ROWS).fetchone() == rows
    leftovers = portal_conn.execute(
        """
        SELECT to_regnamespace('billing_sync'), to_regclass('public.billing_accounts'),
               to_regclass('public.billing_account_memberships'),
               (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.customers'::regclass)
        """
    ).fetchone()
    assert leftovers == (None, None, None, 0)
    # and it can be adopted again
    assert run_cli(capsys, url, "db", "upgrade", release.PRE_RELEASE_REVISION)[0] == 0


BAD_TABLES = {
    "integer id": (
        "CREATE TABLE public.customers (id integer PRIMARY KEY, zuora_account_id text)",
        "the sync needs a column id of type bigint, it has id integer",
    ),
    "no id": (
        "CREATE TABLE public.customers (customer_id bigint PRIMARY KEY, zuora_account_id text)",
        "the sync needs a column id of type bigint, it has no column id",
    ),
    "id not unique": (
        "CREATE TABLE public.customers (id bigint NOT NULL, zuora_account_id text)",
        "id is not unique on its own",
    ),
    "id unique only with another column": (
        "CREATE TABLE public.customers (id bigint, tenant bigint, zuora_account_id text, PRIMARY KEY (tenant, id))",
        "id is not unique on its own",
    ),
    "no account column": (
        "CREATE TABLE public.customers (id bigint PRIMARY KEY, email text)",
        "the sync needs a column zuora_account_id of type text or character varying, it has no column",
    ),
    "integer account column": (
        "CREATE TABLE public.customers (id bigint PRIMARY KEY, zuora_account_id integer)",
        "it has zuora_account_id integer",
    ),
    "a view": (
        "CREATE VIEW public.customers AS SELECT 1::bigint AS id, 'A'::text AS zuora_account_id",
        "it is not a table",
    ),
}


@pytest.mark.parametrize("table", BAD_TABLES, ids=list(BAD_TABLES))
def test_a_customers_table_the_sync_cannot_use_is_refused_with_what_to_change(capsys, conn, db_url, table):
    ddl, reason = BAD_TABLES[table]
    with fresh_database(conn, db_url, ddl) as url:
        code, out, err = run_cli(capsys, url, "db", "upgrade")
        assert code == 1, out
        assert err.startswith("error: migration failed and its revision was rolled back: public.customers cannot be")
        assert reason in err
        assert err.count("\n") == 1
        with psycopg.connect(url) as check:
            nothing = check.execute(
                "SELECT to_regnamespace('billing_sync') IS NULL AND to_regclass('public.billing_accounts') IS NULL"
            ).fetchone()
            assert nothing == (True,)
        assert migrate.current(url) is None


def test_the_refusal_says_how_to_fix_the_table(capsys, conn, db_url):
    ddl, _ = BAD_TABLES["id not unique"]
    with fresh_database(conn, db_url, ddl) as url:
        _, _, err = run_cli(capsys, url, "db", "upgrade")
    assert "CREATE UNIQUE INDEX CONCURRENTLY customers_id_key ON public.customers (id)" in err
