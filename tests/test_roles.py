"""Least privilege, as PostgreSQL enforces it: the application role and the flag admin role that revision
0005 creates, used through login roles that are members of them (as the portal and people would be),
and the triggers on customers, which nothing on a caller's search_path can redirect."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from helpers import FLAG, audit_events, flag_off, flag_on, memberships, run_cli
from pgtools import login_role, url_as
from psycopg import errors

from sync_admin.bucketing import unleash_bucket

APP = "billing_sync_app"
ADMIN = "billing_sync_admin"

Login = Callable[..., psycopg.Connection]


@pytest.fixture
def as_role(conn, db_url) -> Iterator[Callable[[str], tuple[str, Login]]]:
    """as_role(group) -> (url of a new login member of group, connect(**kwargs) as it)."""
    roles = []
    opened: list[psycopg.Connection] = []

    def make(group: str) -> tuple[str, Login]:
        context = login_role(conn, group)
        name, password = context.__enter__()
        roles.append(context)
        url = url_as(db_url, name, password)

        def connect(**kwargs: object) -> psycopg.Connection:
            connection = psycopg.connect(url, autocommit=True, **kwargs)
            opened.append(connection)
            return connection

        return url, connect

    yield make
    for connection in opened:
        connection.close()
    for context in reversed(roles):
        context.__exit__(None, None, None)


def test_the_roles_exist_and_cannot_log_in(conn):
    rows = conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
        " WHERE rolname IN (%s, %s) ORDER BY rolname",
        (ADMIN, APP),
    ).fetchall()
    assert rows == [(ADMIN, False, False, False, False, False), (APP, False, False, False, False, False)]


# --- the application role ---------------------------------------------------------------------------


def test_the_application_role_writes_customers_and_the_sync_follows(conn, as_role):
    _, connect = as_role(APP)
    app = connect()
    flag_on(conn)
    customer = app.execute(
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A-1') RETURNING id"
    ).fetchone()[0]
    assert memberships(conn) == {(customer, "A-1")}
    app.execute("UPDATE public.customers SET zuora_account_id = 'B-2' WHERE id = %s", (customer,))
    assert memberships(app) == {(customer, "B-2")}  # it reads the billing tables too
    assert app.execute("SELECT billing_sync.flag_enabled_for(%s, %s)", (FLAG, customer)).fetchone() == (True,)
    app.execute("DELETE FROM public.customers WHERE id = %s", (customer,))
    assert memberships(conn) == set()


APP_REFUSED = {
    "switch a flag": "UPDATE billing_sync.feature_flags SET enabled = true",
    "add an actor": f"INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES ('{FLAG}', 1)",
    "read the flag table": "SELECT * FROM billing_sync.feature_flags",
    "forge an audit row": (
        "INSERT INTO billing_sync.feature_flag_events (flag_name, table_name, operation, database_user, transaction_id)"
        " VALUES ('x', 'feature_flags', 'UPDATE', 'someone', 1)"
    ),
    "alter the audit": "UPDATE billing_sync.feature_flag_events SET reason = 'nothing happened'",
    "delete the audit": "DELETE FROM billing_sync.feature_flag_events",
    "create in billing_sync": "CREATE TABLE billing_sync.mine (id int)",
    "insert a billing account": "INSERT INTO public.billing_accounts (zuora_account_id) VALUES ('FORGED')",
    "update a billing account": "UPDATE public.billing_accounts SET zuora_account_id = 'FORGED'",
    "delete memberships": "DELETE FROM public.billing_account_memberships",
    "insert a membership": (
        "INSERT INTO public.billing_account_memberships (billing_account_id, customer_id) VALUES (1, 1)"
    ),
    "truncate customers": "TRUNCATE public.customers",
    "disable the sync trigger": "ALTER TABLE public.customers DISABLE TRIGGER billing_sync_customer_update",
    "skip triggers for the session": "SET session_replication_role = replica",
    "run the backfill function": "SELECT billing_sync.backfill_batch(1, 10)",
    "call a bucket function": "SELECT billing_sync.unleash_bucket('x', 1)",
}


@pytest.mark.parametrize("statement", APP_REFUSED.values(), ids=list(APP_REFUSED))
def test_the_application_role_cannot_touch_flags_audit_or_billing_tables(conn, as_role, statement):
    flag_on(conn)
    conn.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A-1')")
    before = (audit_events(conn), memberships(conn))
    _, connect = as_role(APP)
    with pytest.raises(errors.InsufficientPrivilege):
        connect().execute(statement)
    assert (audit_events(conn), memberships(conn)) == before


# --- the admin role ---------------------------------------------------------------------------------


def test_the_admin_role_rolls_the_flag_out_with_sync_admin_and_every_change_is_audited(conn, as_role, capsys):
    customer = conn.execute("INSERT INTO public.customers (email) VALUES ('a@example.com') RETURNING id").fetchone()[0]
    url, connect = as_role(ADMIN)
    login = connect().info.user
    start = len(audit_events(conn))
    steps = [
        ("flag", "enable", FLAG, "--actor", str(customer), "--by", "alice", "--reason", "QA"),
        ("flag", "enable", FLAG, "--percentage", "10", "--by", "alice"),
        ("flag", "disable", FLAG, "--by", "alice", "--reason", "INC-1"),
        ("flag", "resume", FLAG, "--by", "alice"),
        ("flag", "disable", FLAG, "--actor", str(customer), "--by", "alice"),
    ]
    for step in steps:
        code, out, err = run_cli(capsys, url, *step)
        assert (code, err) == (0, ""), (step, out)
    for step in [("flag", "status", FLAG), ("flag", "explain", FLAG, str(customer)), ("flag", "history", FLAG)]:
        code, out, err = run_cli(capsys, url, *step)
        assert (code, err) == (0, ""), (step, out)

    events = conn.execute(
        "SELECT database_user, actor FROM billing_sync.feature_flag_events ORDER BY id OFFSET %s", (start,)
    ).fetchall()
    assert len(events) >= len(steps)
    assert set(events) == {(login, "alice")}


def test_the_admin_role_changes_flags_with_plain_sql(conn, as_role):
    _, connect = as_role(ADMIN)
    admin = connect()
    admin.execute("UPDATE billing_sync.feature_flags SET enabled = true, percentage = 5 WHERE name = %s", (FLAG,))
    admin.execute("INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, 7)", (FLAG,))
    admin.execute("DELETE FROM billing_sync.feature_flag_actors WHERE customer_id = 7")
    operations = [row[1] for row in audit_events(admin)[-3:]]
    assert operations == ["UPDATE", "INSERT", "DELETE"]


ADMIN_REFUSED = {
    "alter the audit": "UPDATE billing_sync.feature_flag_events SET reason = 'nothing happened'",
    "delete the audit": "DELETE FROM billing_sync.feature_flag_events",
    "truncate the audit": "TRUNCATE billing_sync.feature_flag_events",
    "forge an audit row": (
        "INSERT INTO billing_sync.feature_flag_events (flag_name, table_name, operation, database_user, transaction_id)"
        " VALUES ('x', 'feature_flags', 'UPDATE', 'someone', 1)"
    ),
    "switch off the audit": "ALTER TABLE billing_sync.feature_flags DISABLE TRIGGER billing_sync_audit",
    "rename a flag": f"UPDATE billing_sync.feature_flags SET name = 'renamed' WHERE name = '{FLAG}'",
    "delete a flag": "DELETE FROM billing_sync.feature_flags",
    "write customers": "UPDATE public.customers SET zuora_account_id = 'X'",
    "write billing tables": "INSERT INTO public.billing_accounts (zuora_account_id) VALUES ('FORGED')",
}


@pytest.mark.parametrize("statement", ADMIN_REFUSED.values(), ids=list(ADMIN_REFUSED))
def test_the_admin_role_cannot_alter_the_audit_or_write_data(conn, as_role, statement):
    flag_on(conn)  # one audit row more to protect
    before = audit_events(conn)
    _, connect = as_role(ADMIN)
    with pytest.raises(errors.InsufficientPrivilege):
        connect().execute(statement)
    assert audit_events(conn) == before


def test_only_the_owner_can_alter_audit_rows(conn):
    granted = conn.execute(
        """
        SELECT DISTINCT coalesce(r.rolname, 'PUBLIC'), a.privilege_type
        FROM pg_class c CROSS JOIN aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'billing_sync.feature_flag_events'::regclass AND a.grantee <> c.relowner
        """
    ).fetchall()
    assert granted == [(ADMIN, "SELECT")]  # no one but the owner holds any other privilege on the audit
    flag_on(conn)
    conn.execute("UPDATE billing_sync.feature_flag_events SET reason = 'by the owner'")  # the owner can


# --- hijacking the triggers through the search path --------------------------------------------------

# Look-alikes of every function, operator and table the sync uses, each one answering "sync it".
PLANTED = """
CREATE FUNCTION {schema}.flag_enabled_for(text, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION {schema}.unleash_bucket(text, bigint) RETURNS integer LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION {schema}.normalize_zuora_account_id(text) RETURNS text LANGUAGE sql AS $$SELECT 'HIJACKED'$$;
CREATE FUNCTION {schema}.btrim(text, text) RETURNS text LANGUAGE sql AS $$SELECT 'HIJACKED'$$;
CREATE FUNCTION {schema}.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR {schema}.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.always);
CREATE TABLE {schema}.feature_flags (name text, enabled boolean, everyone boolean, percentage integer);
INSERT INTO {schema}.feature_flags VALUES ('{flag}', true, true, 100);
"""
PLANTED_BILLING_TABLES = """
CREATE TABLE attacker.billing_accounts (id bigint, zuora_account_id text);
CREATE TABLE attacker.billing_account_memberships (billing_account_id bigint, customer_id bigint);
"""

TEMPORARY = """
CREATE TEMPORARY TABLE billing_accounts (id bigint, zuora_account_id text);
CREATE TEMPORARY TABLE billing_account_memberships (billing_account_id bigint, customer_id bigint);
CREATE TEMPORARY TABLE feature_flags (name text, enabled boolean, everyone boolean, percentage integer);
INSERT INTO pg_temp.feature_flags VALUES ('{flag}', true, true, 100);
CREATE FUNCTION pg_temp.flag_enabled_for(text, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION pg_temp.normalize_zuora_account_id(text) RETURNS text LANGUAGE sql AS $$SELECT 'HIJACKED'$$;
"""


@pytest.fixture
def hijacker(conn, as_role) -> psycopg.Connection:
    """An application session that planted look-alikes of what the sync uses in public (as a database
    that still lets everyone create there would allow), in a schema of its own and in pg_temp, and put
    them all before pg_catalog on its search_path."""
    _, connect = as_role(APP)
    app = connect()
    login = app.info.user
    conn.execute(f'GRANT CREATE ON SCHEMA public TO "{login}"')
    conn.execute(f'CREATE SCHEMA attacker AUTHORIZATION "{login}"')
    for schema in ("public", "attacker"):
        app.execute(PLANTED.format(schema=schema, flag=FLAG))
    app.execute(PLANTED_BILLING_TABLES)
    app.execute(TEMPORARY.format(flag=FLAG))
    app.execute("SET search_path = pg_temp, attacker, public, pg_catalog")
    return app


def planted_rows(app: psycopg.Connection) -> int:
    """Rows the sync wrote into the look-alike billing tables (it must write none)."""
    tables = [f"{schema}.{table}" for schema in ("pg_temp", "attacker") for table in BILLING_TABLES]
    return sum(app.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables)


BILLING_TABLES = ("billing_accounts", "billing_account_memberships")


def test_planted_objects_do_not_turn_the_sync_on(conn, hijacker):
    flag_off(conn)
    hijacker.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A-1')")
    assert memberships(conn) == set()
    assert hijacker.execute("SELECT billing_sync.flag_enabled_for(%s, 1)", (FLAG,)).fetchone() == (False,)
    assert planted_rows(hijacker) == 0


def test_planted_objects_do_not_change_what_the_sync_writes_or_where(conn, hijacker):
    flag_on(conn)
    kept = hijacker.execute(
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', ' B-2 ') RETURNING id"
    ).fetchone()[0]
    skipped = hijacker.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " VALUES ('b@example.com', 'not an account!') RETURNING id"
    ).fetchone()[0]
    hijacker.execute("UPDATE public.customers SET zuora_account_id = 'C-3' WHERE id = %s", (skipped,))
    assert memberships(conn) == {(kept, "B-2"), (skipped, "C-3")}
    assert planted_rows(hijacker) == 0


def test_planted_objects_do_not_widen_a_percentage_rollout(conn, hijacker):
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, percentage = 1 WHERE name = %s", (FLAG,))
    ids = [
        hijacker.execute(
            "INSERT INTO public.customers (email, zuora_account_id) VALUES (%s, 'A-1') RETURNING id", (f"{n}@x.org",)
        ).fetchone()[0]
        for n in range(20)
    ]
    expected = {(customer, "A-1") for customer in ids if unleash_bucket(FLAG, customer) <= 1}
    assert len(expected) < len(ids)
    assert memberships(conn) == expected


def test_every_security_definer_function_pins_its_search_path(conn):
    unpinned = conn.execute(
        """
        SELECT p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace = 'billing_sync'::regnamespace AND p.prosecdef
          AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
        """
    ).fetchall()
    assert unpinned == []


def test_no_function_of_billing_sync_is_executable_by_public(conn):
    public = conn.execute(
        """
        SELECT p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace = 'billing_sync'::regnamespace
          AND has_function_privilege('public', p.oid, 'EXECUTE')
        """
    ).fetchall()
    assert public == []


# --- every rollout and monitoring command, as the admin role (revision 0009, issue 12) ---------------------

ADMIN_COMMANDS = {
    "db current": (("db", "current"), 0),
    "flag status": (("flag", "status", FLAG), 0),
    "verify": (("verify",), 1),  # it runs, and finds the drift made below
    "backfill": (("backfill", "--settle-seconds", "5"), 0),
    "backfill dry run": (("backfill", "--dry-run"), 0),
    "rollout check": (("rollout", "check"), 1),  # it runs, and fails: the flag has not been on for a day
    "errors": (("errors",), 0),
    "doctor": (("doctor",), 0),
    "heal once": (("heal", "--once", "--max-seconds", "5"), 0),
    "events prune": (("events", "prune", "--older-than", "30d"), 0),
}


@pytest.mark.parametrize("command", ADMIN_COMMANDS, ids=list(ADMIN_COMMANDS))
def test_every_rollout_and_monitoring_command_works_for_the_admin_role(conn, as_role, capsys, command):
    """Tested as a non-superuser login that is a member of billing_sync_admin, as docs/operations.md tells people to."""
    flag_on(conn)
    customer = conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A-1') RETURNING id"
    ).fetchone()[0]
    conn.execute("DELETE FROM public.billing_account_memberships")  # drift for verify, the backfill and heal
    conn.execute(
        "INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id) VALUES (%s, 'backfill_left', 1)",
        (customer,),
    )
    url, login = as_role(ADMIN)
    assert login().execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    args, expected = ADMIN_COMMANDS[command]
    code, out, err = run_cli(capsys, url, *args)
    assert code == expected, (out, err)
    assert "permission denied" not in out + err and "internal error" not in err


def test_watch_works_for_the_admin_role(conn, as_role):
    from test_watch import WatchProcess

    url, _ = as_role(ADMIN)
    watcher = WatchProcess(url)
    try:
        watcher.wait_for("watching channel")
        flag_on(conn)
        conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id) VALUES ('w@example.com', 'not an account')"
        )
        watcher.wait_for("not_an_account")
    finally:
        watcher.kill()


def test_a_permission_error_names_the_role_that_is_needed(conn, as_role, capsys):
    url, _ = as_role(APP)  # the application's role is not the admin's
    code, out, err = run_cli(capsys, url, "verify")
    assert code == 1 and out == ""
    assert err.startswith("error: permission denied for function account_drift: this command needs a login role")
    assert f"member of {ADMIN}" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, url, "db", "current")
    assert code == 1 and "internal error" not in err and f"member of {ADMIN}" in err
