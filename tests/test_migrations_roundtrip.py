"""The migrations through `sync-admin db`: down to nothing and back on a populated database,
revision by revision, from an empty database, and the offline SQL a DBA reviews.

Every installed object is compared through a catalog fingerprint (definitions, privileges,
owners; no OIDs), so a round trip that loses a grant or a trigger fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.script import ScriptDirectory
from helpers import FLAG, flag_on, insert_customer, memberships, run_cli
from pgtools import psql, server_major
from psycopg import errors, sql

from sync_admin import db, migrate
from sync_admin.release import PRE_RELEASE_REVISION as PRE_RELEASE

SCHEMAS = ["public", "billing_sync"]

FINGERPRINT_QUERIES = {
    "schemas": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text FROM pg_namespace n
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1""",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text, c.relpersistence
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "columns": """
        SELECT c.oid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')
        ORDER BY 1, a.attnum""",  # the column order, not attnum: a column dropped and re-added gets a new one
    "constraints": """
        SELECT con.conrelid::regclass::text, con.conname, pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "indexes": """
        SELECT schemaname, indexname, indexdef FROM pg_indexes
        WHERE schemaname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_userbyid(p.proowner),
               p.proacl::text, p.prosecdef, p.proconfig::text, p.provolatile, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
}


def fingerprint(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {name: conn.execute(query, {"schemas": SCHEMAS}).fetchall() for name, query in FINGERPRINT_QUERIES.items()}


def installed_objects(conn: psycopg.Connection) -> list[tuple]:
    """Everything the migrations could have left behind, alembic's own bookkeeping excepted."""
    fp = fingerprint(conn)
    relations = [row for row in fp["relations"] if row[1] != "alembic_version" and row[1] != "alembic_version_pkc"]
    return fp["schemas"][1:] + relations + fp["functions"] + fp["triggers"]


@pytest.fixture
def empty_db(conn: psycopg.Connection, db_url: str) -> Iterator[tuple[str, psycopg.Connection]]:
    """A fresh, never-migrated database on the same server: (its URL, an autocommit connection)."""
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = db.with_database(db_url, name)
    fresh = psycopg.connect(url, autocommit=True)
    yield url, fresh
    fresh.close()
    conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def populate(conn: psycopg.Connection) -> None:
    flag_on(conn)
    for account in ["A1", " A1 ", "B2", None, "bad value"]:
        insert_customer(conn, account)
    conn.execute("INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('other_flag', true)")
    conn.execute("INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, 1)", (FLAG,))
    assert len(memberships(conn)) == 3


def assert_the_schema_works(conn: psycopg.Connection) -> None:
    """The behaviour a fresh install has: flag off and audited, sync on demand, TRUNCATE refused."""
    assert conn.execute("SELECT name, enabled FROM billing_sync.feature_flags").fetchall() == [(FLAG, False)]
    assert conn.execute("SELECT operation, flag_name FROM billing_sync.feature_flag_events").fetchall() == [
        ("INSERT", FLAG)
    ]
    off = insert_customer(conn, "A1")
    assert memberships(conn) == set()
    flag_on(conn)
    on = insert_customer(conn, " A1 ")
    conn.execute("UPDATE public.customers SET zuora_account_id = 'C3' WHERE id = %s", (off,))
    assert memberships(conn) == {(on, "A1"), (off, "C3")}
    with pytest.raises(errors.FeatureNotSupported):
        conn.execute("TRUNCATE billing_sync.feature_flags CASCADE")


def test_downgrade_to_base_and_upgrade_to_head_on_a_populated_database(conn, capsys, db_url):
    template = fingerprint(conn)
    populate(conn)

    code, out, err = run_cli(capsys, db_url, "db", "downgrade", "base", "--yes")
    assert (code, err) == (0, ""), out
    assert "base (nothing installed)" in out
    assert installed_objects(conn) == []
    assert migrate.current(db_url) is None

    code, out, err = run_cli(capsys, db_url, "db", "upgrade", PRE_RELEASE)
    assert (code, err) == (0, ""), out
    assert migrate.current(db_url) == PRE_RELEASE
    assert fingerprint(conn) == template
    assert_the_schema_works(conn)


def test_upgrade_to_the_same_revision_again_changes_nothing(conn, capsys, db_url):
    populate(conn)
    before = (fingerprint(conn), conn.execute("SELECT count(*) FROM billing_sync.feature_flag_events").fetchone())
    code, out, err = run_cli(capsys, db_url, "db", "upgrade", PRE_RELEASE)
    assert (code, err) == (0, ""), out
    assert (fingerprint(conn), conn.execute("SELECT count(*) FROM billing_sync.feature_flag_events").fetchone()) == (
        before
    )
    code, out, _ = run_cli(capsys, db_url, "db", "current")
    assert code == 0 and f"at revision {PRE_RELEASE} (the revision before the release" in out


def test_each_revision_down_and_up_keeps_the_data_and_the_sync(conn, capsys, db_url):
    template = fingerprint(conn)
    flag_on(conn)
    customer = insert_customer(conn, "A1")
    chain = [script.revision for script in ScriptDirectory.from_config(migrate.alembic_config(None)).walk_revisions()]
    assert chain[0] == migrate.head_revision() and chain[-1] == "0001"
    chain = chain[chain.index(PRE_RELEASE) :]  # the template's revision (the release has tests of its own)
    for revision in chain[1:]:  # 0012 -> ... -> 0001, one revision at a time
        code, out, err = run_cli(capsys, db_url, "db", "downgrade", revision, "--yes")
        assert (code, err) == (0, ""), out
        assert migrate.current(db_url) == revision
        # the data stays and the sync of that revision works on it
        assert memberships(conn) == {(customer, "A1")}
        moved = insert_customer(conn, "B2")
        assert (moved, "B2") in memberships(conn)
        conn.execute("DELETE FROM public.customers WHERE id = %s", (moved,))
        assert conn.execute("SELECT enabled FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)).fetchone() == (
            True,
        )
    for revision in reversed(chain[:-1]):  # and back up, one at a time
        assert run_cli(capsys, db_url, "db", "upgrade", revision)[0] == 0
        assert memberships(conn) == {(customer, "A1")}
    assert fingerprint(conn) == template
    moved = insert_customer(conn, "B2")
    assert (moved, "B2") in memberships(conn)


def test_upgrade_of_an_empty_database_installs_what_the_template_has(conn, capsys, empty_db):
    url, fresh = empty_db
    code, out, err = run_cli(capsys, url, "db", "upgrade", PRE_RELEASE)
    assert (code, err) == (0, ""), out
    assert fingerprint(fresh) == fingerprint(conn)
    assert_the_schema_works(fresh)


def test_offline_sql_reviewed_by_a_dba_installs_the_same_schema(conn, capsys, empty_db, tmp_path):
    code, script, err = run_cli(capsys, None, "db", "sql", f"base:{PRE_RELEASE}")
    assert (code, err) == (0, "")
    assert "CREATE TRIGGER billing_sync_customer_update" in script
    assert "%%" not in script
    url, fresh = empty_db
    # As a DBA runs it: psql, one statement at a time (CREATE INDEX CONCURRENTLY runs outside a transaction).
    (tmp_path / "upgrade.sql").write_text(script, encoding="utf-8")
    done = psql(server_major(conn), url, "-q", "-f", str(tmp_path / "upgrade.sql"))
    assert done.returncode == 0, done.stderr
    assert fingerprint(fresh) == fingerprint(conn)
    assert fresh.execute("SELECT version_num FROM alembic_version").fetchall() == [(PRE_RELEASE,)]
    assert_the_schema_works(fresh)


def test_downgrade_below_the_gates_turns_off_a_flag_that_was_on_for_a_cohort_only(conn, capsys, db_url):
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, percentage = 10 WHERE name = %s", (FLAG,))
    customer = insert_customer(conn, None)
    assert run_cli(capsys, db_url, "db", "downgrade", "0001", "--yes")[0] == 0
    assert conn.execute("SELECT enabled FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)).fetchone() == (
        False,
    )
    operation, reason = conn.execute(
        "SELECT operation, reason FROM billing_sync.feature_flag_events ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert operation == "UPDATE" and reason.startswith("migration 0002 downgrade")
    conn.execute("UPDATE public.customers SET zuora_account_id = 'A1' WHERE id = %s", (customer,))
    assert memberships(conn) == set()  # off for everyone, not on for everyone


def test_a_downgrade_says_what_it_undoes_and_drops_and_needs_confirmation(conn, db_url, capsys):
    """`db downgrade base` drops customers (created by 0001), the billing tables and the audit log: it says so,
    with row counts, and changes nothing without --yes (standard input is not a terminal here)."""
    conn.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A-1')")
    code, out, err = run_cli(capsys, db_url, "db", "downgrade", "base")
    assert code == 2
    assert err.strip() == "error: a downgrade is not undone by anything; rerun with --yes to confirm (nothing changed)"
    assert "undoes:" in out and "  0001  Billing accounts, memberships" in out
    assert "public.customers (created by revision 0001): 1 rows" in out
    assert "schema billing_sync, with the flags and their audit log:" in out
    assert conn.execute("SELECT count(*) FROM public.customers").fetchone() == (1,)  # nothing changed

    code, out, err = run_cli(capsys, db_url, "db", "downgrade", "0008")
    assert code == 2 and "  0009  Least privilege that works" in out and "deletes, for good" not in out

    code, out, err = run_cli(capsys, db_url, "db", "downgrade", "0008", "--yes")
    assert (code, err) == (0, "") and out.strip().endswith("at revision 0008")
