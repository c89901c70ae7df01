"""Every change to a flag row is audited: one billing_sync.feature_flag_events row per change,
by any client, with who (login role, application, actor) and why; the log is append-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from helpers import FLAG, flag_on
from psycopg import errors, sql
from psycopg.rows import dict_row

from sync_admin import flags

EVENT_COLUMNS = (
    "id, flag_name, table_name, operation, database_user, application_name,"
    " actor, reason, transaction_id, before, after"
)


def events(conn: psycopg.Connection, after_id: int = 0) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        f"SELECT {EVENT_COLUMNS} FROM billing_sync.feature_flag_events WHERE id > %s ORDER BY id", (after_id,)
    ).fetchall()


def last_event_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM billing_sync.feature_flag_events").fetchone()[0]


def set_context(conn: psycopg.Connection, actor: str | None, reason: str | None) -> None:
    conn.execute(
        "SELECT set_config('billing_sync.actor', %s, true), set_config('billing_sync.reason', %s, true)",
        (actor or "", reason or ""),
    )


def flag_row(conn: psycopg.Connection, name: str = FLAG) -> tuple | None:
    return conn.execute("SELECT * FROM billing_sync.feature_flags WHERE name = %s", (name,)).fetchone()


def test_the_migration_created_the_flag_off_with_an_audited_insert(conn):
    first = events(conn)[0]
    assert (first["flag_name"], first["table_name"], first["operation"]) == (FLAG, "feature_flags", "INSERT")
    assert first["before"] is None and first["after"]["enabled"] is False
    assert first["reason"] == "created by migration 0001"
    assert flag_row(conn)[1] is False  # (name, enabled, ...)


def test_a_plain_sql_update_writes_one_event_with_who_and_why(conn, connect):
    start = last_event_id(conn)
    console = connect(autocommit=False, application_name="ops-console")
    set_context(console, "alice", "INC-42: start the rollout")
    txid = int(console.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
    console.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
    console.commit()

    [event] = events(conn, start)
    assert event["flag_name"] == FLAG
    assert event["table_name"] == "feature_flags"
    assert event["operation"] == "UPDATE"
    assert event["database_user"] == console.execute("SELECT session_user").fetchone()[0]
    assert event["application_name"] == "ops-console"
    assert event["actor"] == "alice"
    assert event["reason"] == "INC-42: start the rollout"
    assert event["transaction_id"] == txid
    assert (event["before"]["enabled"], event["after"]["enabled"]) == (False, True)
    assert event["before"]["name"] == event["after"]["name"] == FLAG


def test_insert_rename_and_delete_of_a_flag_row_are_each_audited_once(conn):
    start = last_event_id(conn)
    with conn.transaction():
        set_context(conn, "bob", "new flag")
        conn.execute("INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('beta_feature', true)")
    with conn.transaction():
        set_context(conn, "bob", "rename")
        conn.execute("UPDATE billing_sync.feature_flags SET name = 'beta_feature_2' WHERE name = 'beta_feature'")
    with conn.transaction():
        set_context(conn, "carol", "cleanup")
        conn.execute("DELETE FROM billing_sync.feature_flags WHERE name = 'beta_feature_2'")

    inserted, renamed, deleted = events(conn, start)
    assert (inserted["operation"], inserted["flag_name"], inserted["actor"], inserted["reason"]) == (
        "INSERT",
        "beta_feature",
        "bob",
        "new flag",
    )
    assert inserted["before"] is None and inserted["after"]["enabled"] is True
    assert (renamed["operation"], renamed["flag_name"]) == ("UPDATE", "beta_feature_2")
    assert (renamed["before"]["name"], renamed["after"]["name"]) == ("beta_feature", "beta_feature_2")
    assert (deleted["operation"], deleted["flag_name"], deleted["actor"], deleted["reason"]) == (
        "DELETE",
        "beta_feature_2",
        "carol",
        "cleanup",
    )
    assert deleted["before"]["name"] == "beta_feature_2" and deleted["after"] is None
    assert flag_row(conn, "beta_feature_2") is None  # the history outlives the flag


def test_a_multi_row_update_writes_one_event_per_changed_row_and_none_for_the_others(conn):
    conn.execute("INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('off_flag', false), ('on_flag', true)")
    start = last_event_id(conn)
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true")
    changed = events(conn, start)
    assert sorted(event["flag_name"] for event in changed) == sorted([FLAG, "off_flag"])
    assert all(event["operation"] == "UPDATE" for event in changed)
    assert len({event["transaction_id"] for event in changed}) == 1


def test_two_changes_in_one_transaction_are_two_events(conn):
    start = last_event_id(conn)
    with conn.transaction():
        set_context(conn, "dave", "flap")
        conn.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
        conn.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))
    flapped = events(conn, start)
    assert [(e["before"]["enabled"], e["after"]["enabled"]) for e in flapped] == [(False, True), (True, False)]


def test_an_update_that_changes_nothing_writes_no_event_and_keeps_updated_at(conn):
    row = flag_row(conn)
    start = last_event_id(conn)
    for statement in [
        "UPDATE billing_sync.feature_flags SET enabled = enabled",
        "UPDATE billing_sync.feature_flags SET enabled = false",  # it is off already
        "UPDATE billing_sync.feature_flags SET name = name, enabled = false",
        "UPDATE billing_sync.feature_flags SET enabled = true WHERE false",
    ]:
        conn.execute(statement)
        assert events(conn, start) == [], statement
    assert flag_row(conn) == row


def test_without_context_actor_and_reason_are_null(conn, connect):
    start = last_event_id(conn)
    other = connect(application_name="")
    flag_on(other)
    [event] = events(conn, start)
    assert (event["actor"], event["reason"], event["application_name"]) == (None, None, None)


def test_the_context_does_not_leak_into_the_next_transaction(conn):
    start = last_event_id(conn)
    with conn.transaction():
        set_context(conn, "erin", "first")
        conn.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
    # a rolled-back transaction's context does not leak either
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        set_context(conn, "mallory", "rolled back")
        conn.execute("SELECT 1 / 0")
    assert conn.execute(
        "SELECT current_setting('billing_sync.actor', true), current_setting('billing_sync.reason', true)"
    ).fetchone() in {("", ""), (None, None)}
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))
    first, second = events(conn, start)
    assert (first["actor"], first["reason"]) == ("erin", "first")
    assert (second["actor"], second["reason"]) == (None, None)


def test_a_sync_admin_change_leaves_no_context_on_its_connection(conn):
    """Under PgBouncer transaction pooling the next client gets this server session: nothing may stick."""
    start = last_event_id(conn)
    flags.enable(conn, FLAG, everyone=True, actor="pat", reason="library call")
    assert conn.execute(
        "SELECT current_setting('billing_sync.actor', true), current_setting('billing_sync.reason', true)"
    ).fetchone() in {("", ""), (None, None)}
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))
    by_library, by_sql = events(conn, start)
    assert (by_library["actor"], by_library["reason"]) == ("pat", "library call")
    assert (by_sql["actor"], by_sql["reason"]) == (None, None)


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE billing_sync.feature_flags CASCADE",
        "TRUNCATE billing_sync.feature_flags, billing_sync.feature_flag_actors",
    ],
)
def test_truncate_of_the_flags_is_refused(conn, statement):
    flags_before = conn.execute("SELECT * FROM billing_sync.feature_flags").fetchall()
    start = last_event_id(conn)
    with pytest.raises(errors.FeatureNotSupported, match="not audited; use DELETE"):
        conn.execute(statement)
    assert conn.execute("SELECT * FROM billing_sync.feature_flags").fetchall() == flags_before
    assert events(conn, start) == []


# --- a non-owner operator role ------------------------------------------------------------------


@pytest.fixture
def operator(conn: psycopg.Connection, db_url: str) -> Iterator[tuple[str, Callable[..., psycopg.Connection]]]:
    """A login role allowed to change flags (and read their history), as an on-call engineer would be."""
    name = f"billing_ops_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    role = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA billing_sync TO {}").format(role))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON billing_sync.feature_flags TO {}").format(role))
    conn.execute(sql.SQL("GRANT SELECT ON billing_sync.feature_flag_events TO {}").format(role))
    opened: list[psycopg.Connection] = []

    def login(**kwargs: Any) -> psycopg.Connection:
        connection = psycopg.connect(db_url, user=name, password=password, autocommit=True, **kwargs)
        opened.append(connection)
        return connection

    yield name, login
    for connection in opened:
        connection.close()
    conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
    conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_an_operator_change_is_audited_under_its_login_role(conn, operator):
    name, login = operator
    ops = login(application_name="oncall")
    start = last_event_id(conn)
    with ops.transaction():
        set_context(ops, "frank", "page 123")
        ops.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
    [event] = events(conn, start)
    assert (event["database_user"], event["application_name"], event["actor"]) == (name, "oncall", "frank")


def test_set_role_does_not_hide_the_login_role(conn, operator):
    name, _ = operator
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(name)))
    start = last_event_id(conn)
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
    conn.execute("RESET ROLE")
    [event] = events(conn, start)
    assert event["database_user"] == conn.execute("SELECT session_user").fetchone()[0] != name


def test_an_operator_cannot_alter_or_forge_audit_rows(conn, operator):
    _, login = operator
    ops = login()
    ops.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
    history = events(conn)
    assert len(ops.execute("SELECT * FROM billing_sync.feature_flag_events").fetchall()) == len(history)
    allowed = []
    for statement in [
        "UPDATE billing_sync.feature_flag_events SET reason = 'nothing to see', actor = 'someone else'",
        "DELETE FROM billing_sync.feature_flag_events",
        "TRUNCATE billing_sync.feature_flag_events",
        "INSERT INTO billing_sync.feature_flag_events (flag_name, table_name, operation, database_user, transaction_id)"
        " VALUES ('account_data_persistence', 'feature_flags', 'UPDATE', 'postgres', 1)",
        "ALTER TABLE billing_sync.feature_flags DISABLE TRIGGER billing_sync_audit",
        "TRUNCATE billing_sync.feature_flags CASCADE",
    ]:
        try:
            ops.execute(statement)
            allowed.append(statement)
        except errors.InsufficientPrivilege:
            pass
    assert allowed == []
    assert events(conn) == history
