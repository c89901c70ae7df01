"""The release of account_data_persistence (revision 0013, issue 13): the guard that refuses an unfinished rollout
(online and in the offline SQL), the audited override, the refusal to delete the flag by hand before it, the sync
always on after it, every command saying so, and the rollback of a release (downgrade: the flag back on for
everyone with its gates, audited) and the release again.

Each test starts from the template (the revision before the release, the rollout in progress) and upgrades its own
database to head.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from helpers import FLAG, insert_customer, memberships, run_cli
from pgtools import fresh_database, psql, server_major
from test_doctor import run_fixes

from sync_admin import flags, migrate, migration_ops, release, resources, rollout


def days_pass(conn: psycopg.Connection, hours: float) -> None:
    """Move every audit event HOURS into the past (the tests connect as the owner of the audit table)."""
    conn.execute(
        "UPDATE billing_sync.feature_flag_events SET occurred_at = occurred_at - make_interval(secs => %s)",
        (hours * 3600,),
    )


def revision(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
    assert row is not None
    return row[0]


def operations(conn: psycopg.Connection) -> list[tuple[str, str, str | None, str | None]]:
    """(table, operation, actor, reason) of every audit record, oldest first."""
    return conn.execute(
        "SELECT table_name, operation, actor, reason FROM billing_sync.feature_flag_events ORDER BY id"
    ).fetchall()


def release_record(conn: psycopg.Connection) -> tuple[str | None, str | None, dict, dict]:
    row = conn.execute(
        "SELECT actor, reason, before, after FROM billing_sync.feature_flag_events"
        " WHERE operation = 'RELEASE' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row is not None
    return row


@pytest.fixture
def complete(conn, capsys, db_url) -> list[int]:
    """A complete rollout: testing customers, a percentage, everyone, backfilled, a day ago."""
    ids = [insert_customer(conn, f"A{i % 4}", f"c{i}@example.com") for i in range(12)]
    for args in (["--actor", str(ids[0])], ["--percentage", "30"], ["--everyone"]):
        assert run_cli(capsys, db_url, "flag", "enable", FLAG, *args, "--by", "rita", "--reason", "rollout")[0] == 0
    assert run_cli(capsys, db_url, "backfill", "--reason", "rollout")[0] == 0
    days_pass(conn, 25)
    assert rollout.check(conn).passed
    return ids


def test_deleting_or_renaming_the_flag_by_hand_is_refused_before_the_release(conn):
    """The obvious wrong way to retire the flag would stop the sync for everyone: refused, one line, nothing lost."""
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, everyone = true")
    customer = insert_customer(conn, "A1")
    for statement in (
        "DELETE FROM billing_sync.feature_flags",
        "DELETE FROM billing_sync.feature_flags WHERE name = 'account_data_persistence'",
        "UPDATE billing_sync.feature_flags SET name = 'retired'",
    ):
        with pytest.raises(psycopg.errors.ObjectInUse) as refused:
            conn.execute(statement)
        message = refused.value.diag.message_primary or ""
        assert "\n" not in message.strip()
        assert "sync-admin db upgrade" in message and "sync-admin flag disable" in message
    assert conn.execute("SELECT enabled, everyone FROM billing_sync.feature_flags").fetchall() == [(True, True)]
    conn.execute("UPDATE public.customers SET zuora_account_id = 'A2' WHERE id = %s", (customer,))
    assert memberships(conn) == {(customer, "A2")}
    # The gates themselves stay editable by hand (an actor row may be deleted, audited as before).
    conn.execute("INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, %s)", (FLAG, 1))
    conn.execute("DELETE FROM billing_sync.feature_flag_actors")


def test_the_guard_refuses_an_unfinished_rollout_with_one_line_and_changes_nothing(conn, capsys, db_url):
    ids = [insert_customer(conn, f"A{i}", f"c{i}@example.com") for i in range(4)]
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "50", "--by", "rita")[0] == 0
    before = operations(conn)

    code, _out, err = run_cli(capsys, db_url, "db", "upgrade")

    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "release of account_data_persistence refused" in err
    assert "is not on for everyone (ON for 50 %)" in err and "--everyone" in err
    assert "sync-admin rollout check" in err and "--release-override" in err
    assert revision(conn) == release.PRE_RELEASE_REVISION
    assert operations(conn) == before
    assert flags.get_flag(conn, FLAG).percentage == 50
    # The sync is as it was: gated.
    conn.execute("UPDATE public.customers SET zuora_account_id = zuora_account_id || 'x'")
    in_rollout = {row[0] for row in conn.execute("SELECT id FROM billing_sync.customers_in_rollout(%s)", (FLAG,))}
    assert {customer for customer, _ in memberships(conn)} == in_rollout
    assert len(in_rollout) < len(ids) or in_rollout  # a 50 % cohort of 4, whatever it is


def test_the_guard_says_each_missing_condition(conn, capsys, db_url):
    """On for everyone, but not for a day, a customer whose value is no account, drift (a membership deleted)."""
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
    insert_customer(conn, "A1", "good@example.com")
    insert_customer(conn, "no account!", "bad@example.com")
    conn.execute("DELETE FROM public.billing_account_memberships")
    code, _, err = run_cli(capsys, db_url, "db", "upgrade")
    assert code == 1
    assert "of the 24 h verification period" in err
    assert "drift (missing_membership: 1)" in err
    assert "customers whose zuora_account_id is not an account: 1" in err
    assert "sync skips recorded since the flag went on for everyone (not_an_account: 1)" in err
    assert revision(conn) == release.PRE_RELEASE_REVISION
    # The SQL guard and `sync-admin rollout check` agree (the check puts both kinds of skips on one line).
    blockers = [row[0] for row in conn.execute("SELECT * FROM billing_sync.release_blockers(%s, 24)", (FLAG,))]
    assert len(blockers) == 4 and rollout.check(conn).failed == 3


@pytest.mark.parametrize(
    "state",
    ["off", "actors", "percentage", "everyone_fresh", "everyone_day", "pulled_day", "drift_day", "skip_day"],
)
def test_the_sql_guard_and_the_rollout_check_agree(conn, capsys, db_url, state):
    ids = [insert_customer(conn, f"A{i % 3}", f"c{i}@example.com") for i in range(6)]
    enable = {"actors": ["--actor", str(ids[0])], "percentage": ["--percentage", "40"]}.get(state, ["--everyone"])
    if state != "off":
        assert run_cli(capsys, db_url, "flag", "enable", FLAG, *enable)[0] == 0
        assert run_cli(capsys, db_url, "backfill")[0] == 0
    if state == "pulled_day":
        assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC")[0] == 0
    if state == "drift_day":
        conn.execute("DELETE FROM public.billing_account_memberships WHERE customer_id = %s", (ids[1],))
    if state == "skip_day":
        conn.execute("UPDATE public.customers SET zuora_account_id = '!!' WHERE id = %s", (ids[2],))
    if state.endswith("_day"):
        days_pass(conn, 30)
    blockers = [row[0] for row in conn.execute("SELECT * FROM billing_sync.release_blockers(%s, 24)", (FLAG,))]
    checklist = rollout.check(conn, 24)
    assert (not blockers) == checklist.passed, (blockers, checklist.lines)
    assert (state == "everyone_day") == checklist.passed


def test_a_complete_rollout_is_released_the_sync_always_on_and_audited_once(conn, capsys, db_url, complete):
    conn.execute(
        "INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length,"
        " transaction_id, occurred_at) VALUES (1, 'INSERT', 'not_an_account', 'x', 1, 1, now() - interval"
        " '30 days')"
    )  # a skip from before the everyone period does not count
    before = operations(conn)

    code, out, err = run_cli(capsys, db_url, "db", "upgrade", "--by", "rita", "--reason", "rollout issue #42 done")

    assert (code, err) == (0, ""), err
    assert revision(conn) == release.RELEASE_REVISION
    assert conn.execute("SELECT count(*) FROM billing_sync.feature_flags").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM billing_sync.feature_flag_actors").fetchone() == (0,)
    assert conn.execute("SELECT to_regnamespace('billing_sync_enabled')").fetchone() == (None,)
    # One record of the retirement; the history before it untouched.
    assert operations(conn) == [*before, ("feature_flags", "RELEASE", "rita", "rollout issue #42 done")]
    _, _, flag_before, verdict = release_record(conn)
    assert flag_before["enabled"] is True and flag_before["everyone"] is True and flag_before["percentage"] == 30
    assert [actor["customer_id"] for actor in flag_before["actors"]] == [complete[0]]
    assert verdict["check_passed"] is True and verdict["override"] is None and verdict["blockers"] == []
    # The sync is always on: inserts (one row and many), updates, without any flag.
    single = insert_customer(conn, "N1", "new@example.com")
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'bulk' || g || '@example.com', 'B' || (g % 3) FROM generate_series(1, 50) g"
    )
    conn.execute("UPDATE public.customers SET zuora_account_id = 'U1' WHERE id = %s", (complete[1],))
    assert (single, "N1") in memberships(conn) and (complete[1], "U1") in memberships(conn)
    code, out, _ = run_cli(capsys, db_url, "verify")
    assert code == 0 and "no drift" in out and "released" in out


def test_after_the_release_every_command_says_so(conn, capsys, db_url, complete):
    assert run_cli(capsys, db_url, "db", "upgrade", "--by", "rita")[0] == 0

    for args in (
        ("flag", "status", FLAG),
        ("flag", "enable", FLAG, "--everyone"),
        ("flag", "disable", FLAG),
        ("flag", "resume", FLAG),
        ("flag", "explain", FLAG, "1"),
    ):
        code, out, err = run_cli(capsys, db_url, *args)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1 and "was released" in err, (args, err)
        assert f"sync-admin db downgrade {release.PRE_RELEASE_REVISION}" in err
    code, out, _ = run_cli(capsys, db_url, "flag", "history", FLAG)
    assert code == 0 and "RELEASE" in out and "released (revision 0013)" in out
    code, out, _ = run_cli(capsys, db_url, "flag", "list")
    assert code == 0 and "released" in out
    code, out, _ = run_cli(capsys, db_url, "doctor")
    assert code == 0, out
    assert "at head (0013)" in out and "released" in out
    code, out, _ = run_cli(capsys, db_url, "backfill")
    assert code == 0, out
    code, out, _ = run_cli(capsys, db_url, "errors")
    assert code == 0 and "released" in out
    code, out, _ = run_cli(capsys, db_url, "errors", "--format", "json")
    assert json.loads(out)["release"]["actor"] == "rita"
    code, out, _ = run_cli(capsys, db_url, "rollout", "check")
    assert code == 0 and "flag released" in out
    code, out, _ = run_cli(capsys, db_url, "verify", "--format", "json")
    assert code == 0 and json.loads(out)["clean"] is True
    # The repair works on: a customer written under snapshot isolation (deferred to the repair) is synced by heal.
    with psycopg.connect(db_url, autocommit=False) as app:
        app.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        app.execute("UPDATE public.customers SET zuora_account_id = 'RR1' WHERE id = %s", (complete[3],))
    assert [customer for customer, _ in conn.execute("SELECT customer_id, reason FROM billing_sync.sync_repairs")] == [
        complete[3]
    ]
    code, out, err = run_cli(capsys, db_url, "heal", "--once")
    assert (code, err) == (0, ""), err
    assert (complete[3], "RR1") in memberships(conn)


def test_the_override_releases_an_unfinished_rollout_and_records_what_was_missing(conn, capsys, db_url):
    insert_customer(conn, "A1")
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "10")[0] == 0

    code, _, err = run_cli(
        capsys, db_url, "db", "upgrade", "--release-override", "INC-7: the flag must go today", "--by", "olga"
    )

    assert (code, err) == (0, "")
    actor, _, flag_before, verdict = release_record(conn)
    assert actor == "olga"
    assert verdict["check_passed"] is False and verdict["override"] == "INC-7: the flag must go today"
    assert any("not on for everyone" in line for line in verdict["blockers"])
    assert flag_before["percentage"] == 10
    done = release.released(conn)
    assert done is not None and done.overridden and "overridden" in done.summary


def test_a_new_empty_database_upgrades_straight_to_head(conn, db_url, capsys):
    with fresh_database(conn, db_url) as url:
        code, _out, err = run_cli(capsys, url, "db", "upgrade")
        assert (code, err) == (0, ""), err
        with psycopg.connect(url, autocommit=True) as fresh:
            assert revision(fresh) == release.RELEASE_REVISION
            done = release.released(fresh)
            assert done is not None and done.new_database
            customer = insert_customer(fresh, "A1")
            assert memberships(fresh) == {(customer, "A1")}


def test_downgrade_restores_the_flag_on_for_everyone_with_its_gates_audited_and_upgrade_again(
    conn, capsys, db_url, complete
):
    assert run_cli(capsys, db_url, "db", "upgrade", "--by", "rita")[0] == 0
    code, out, err = run_cli(
        capsys, db_url, "db", "downgrade", release.PRE_RELEASE_REVISION, "--yes", "--by", "sre", "--reason", "INC-9"
    )
    assert (code, err) == (0, ""), err
    assert "brings account_data_persistence back, on for everyone" in out
    assert revision(conn) == release.PRE_RELEASE_REVISION
    flag = flags.get_flag(conn, FLAG)
    assert (flag.enabled, flag.everyone, flag.percentage, flag.actors) == (True, True, 30, (complete[0],))
    assert conn.execute("SELECT to_regnamespace('billing_sync_enabled') IS NOT NULL").fetchone() == (True,)
    assert operations(conn)[-2][1] == "RELEASE" and operations(conn)[-1] == ("feature_flags", "RESTORE", "sre", "INC-9")
    assert release.released(conn) is None
    # The kill switch works again, instantly, with nothing lost.
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "rollback")[0] == 0
    moved = complete[2]
    conn.execute("UPDATE public.customers SET zuora_account_id = 'OFF1' WHERE id = %s", (moved,))
    assert (moved, "OFF1") not in memberships(conn)
    assert run_cli(capsys, db_url, "flag", "resume", FLAG)[0] == 0
    assert run_cli(capsys, db_url, "backfill")[0] == 0
    assert (moved, "OFF1") in memberships(conn)
    # The restore began a new period on for everyone: the guard wants a day again.
    code, _, err = run_cli(capsys, db_url, "db", "upgrade")
    assert code == 1 and "verification period" in err
    days_pass(conn, 25)
    assert run_cli(capsys, db_url, "db", "upgrade", "--by", "rita", "--reason", "again")[0] == 0
    assert revision(conn) == release.RELEASE_REVISION
    assert [op for _, op, _, _ in operations(conn)].count("RELEASE") == 2


def test_the_offline_sql_carries_the_guard(conn, capsys, db_url, tmp_path):
    code, script, _ = run_cli(capsys, None, "db", "sql", f"{release.PRE_RELEASE_REVISION}:{release.RELEASE_REVISION}")
    assert code == 0
    path = tmp_path / "release.sql"
    path.write_text(script)
    assert "release of account_data_persistence refused" in script
    insert_customer(conn, "A1")
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "20")[0] == 0
    major = server_major(conn)

    refused = psql(major, db_url, "-f", str(path))
    assert refused.returncode != 0 and "release of account_data_persistence refused" in refused.stderr
    assert revision(conn) == release.PRE_RELEASE_REVISION

    overridden = psql(
        major, db_url, "-c", "SET billing_sync.release_override = 'DBA: approved in CHG-12'", "-f", str(path)
    )
    assert overridden.returncode == 0, overridden.stderr
    assert revision(conn) == release.RELEASE_REVISION
    _, _, _, verdict = release_record(conn)
    assert verdict["override"] == "DBA: approved in CHG-12"


def test_the_release_guard_options_reach_the_revision_through_plain_alembic(conn, db_url):
    """`alembic -x release_min_hours=0 -x actor=... upgrade head`, as a deploy script without sync-admin would."""
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, everyone = true")
    insert_customer(conn, "A1")
    with pytest.raises(migrate.ReleaseRefused):
        migrate.upgrade(db_url)
    options = ["-x", "release_min_hours=0", "-x", "actor=ci", "-x", "reason=plain"]
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(resources.alembic_ini()), *options, "upgrade", "head"],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    actor, reason, _, verdict = release_record(conn)
    assert (actor, reason, verdict["min_hours"], verdict["check_passed"]) == ("ci", "plain", 0, True)


def wait_until_waiting_for_customers(observer: psycopg.Connection, process: subprocess.Popen[str]) -> None:
    """Until the release (in PROCESS) asks for its lock on customers, which another transaction holds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = observer.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.customers'::regclass AND NOT granted)"
        ).fetchone()
        if row and row[0]:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError("the release never asked for its lock on customers")


def release_while_held(conn, connect, db_url: str, customer: int, meanwhile) -> tuple[int, str]:
    """Run `sync-admin db upgrade` while another transaction holds a customer row (ROW EXCLUSIVE on customers, so
    the release's lock retries wait); once the release waits for its lock, run MEANWHILE(), then let go.
    The release's exit code and stderr."""
    holder = connect(autocommit=False)
    holder.execute("UPDATE public.customers SET email = email WHERE id = %s", (customer,))
    process = subprocess.Popen(
        [sys.executable, "-m", "sync_admin.cli", "--database-url", db_url, "db", "upgrade"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_waiting_for_customers(conn, process)
        meanwhile()
        holder.rollback()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err


def test_a_kill_switch_pulled_while_the_release_waits_for_its_lock_stops_the_release(
    conn, connect, capsys, db_url, complete
):
    """The guard passed, then (while the release retries its lock on customers behind a long transaction) the kill
    switch is pulled: the kill switch is not held up, and the release, seeing it under its lock, refuses."""

    def pull() -> None:
        code, _, err = run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC-8")
        assert (code, err) == (0, "")  # at once: the release holds no lock of the flag tables while it retries

    code, err = release_while_held(conn, connect, db_url, complete[0], pull)
    assert code == 1
    assert "1 flag change(s) and 0 sync skip(s) committed that its check did not see" in err
    assert revision(conn) == release.PRE_RELEASE_REVISION
    assert flags.get_flag(conn, FLAG).pulled


def test_a_row_created_by_hand_after_the_release_is_not_a_flag_again(conn, capsys, db_url, complete):
    assert run_cli(capsys, db_url, "db", "upgrade")[0] == 0
    conn.execute("INSERT INTO billing_sync.feature_flags (name, enabled) VALUES (%s, false)", (FLAG,))
    code, _, err = run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")
    assert code == 2 and "was released" in err
    code, out, _ = run_cli(capsys, db_url, "verify")
    assert code == 0 and "released" in out  # the sync is on for everyone, whatever that row says
    customer = insert_customer(conn, "R1", "stray@example.com")
    assert (customer, "R1") in memberships(conn)
    code, out, _ = run_cli(capsys, db_url, "doctor")
    assert code == 0 and "WARN  flag account_data_persistence" in out and "nothing reads it" in out
    run_fixes(out.splitlines(), db_url)  # as printed, in a shell, as an operator would
    assert conn.execute("SELECT count(*) FROM billing_sync.feature_flags").fetchone() == (0,)
    code, out, _ = run_cli(capsys, db_url, "doctor")
    assert code == 0 and "WARN" not in out


def test_a_kill_switch_pulled_and_resumed_while_the_release_waits_still_stops_it(
    conn, connect, capsys, db_url, complete
):
    """Pulled and resumed before the release gets its lock: the flag is on for everyone again, but its verification
    period started over, so the release (which sees what committed after its check) refuses."""

    def pull_and_resume() -> None:
        assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC-8")[0] == 0
        assert run_cli(capsys, db_url, "flag", "resume", FLAG, "--reason", "INC-8 over")[0] == 0

    code, err = release_while_held(conn, connect, db_url, complete[0], pull_and_resume)
    assert code == 1
    assert "2 flag change(s) and 0 sync skip(s) committed that its check did not see" in err
    assert revision(conn) == release.PRE_RELEASE_REVISION


def test_a_customer_write_that_read_the_flag_first_never_deadlocks_with_the_release(
    conn, connect, db_url, complete, monkeypatch
):
    """A transaction reads the flag tables, then writes a customer, while the release holds customers and waits
    for the flag tables: a lock cycle. The release's attempt is shorter than deadlock_timeout, so it is the
    release that gives up (and retries), never the customer write."""
    monkeypatch.setattr(migration_ops, "LOCK_RETRY_TIMINGS", ((3000, 0.2),) * 20)
    app = connect(autocommit=False)
    app.execute("SELECT billing_sync.flag_enabled_for(%s, %s)", (FLAG, complete[0]))  # ACCESS SHARE on the flags
    outcome: dict[str, object] = {}

    def release_it() -> None:
        try:
            migrate.upgrade(db_url, guard=release.GuardOptions(actor="rita"))
            outcome["released"] = True
        except Exception as exc:  # the assertion below says what it was
            outcome["error"] = exc

    thread = threading.Thread(target=release_it)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the release holds customers and waits for the flag tables
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'billing_sync.feature_flags'::regclass"
            " AND mode = 'AccessExclusiveLock' AND NOT granted)"
        ).fetchone()
        if row and row[0]:
            break
        time.sleep(0.005)
    else:
        raise AssertionError("the release never waited for the flag tables")
    app.execute("UPDATE public.customers SET zuora_account_id = 'DL1' WHERE id = %s", (complete[1],))
    app.commit()
    thread.join(timeout=120)
    assert outcome == {"released": True}, outcome
    assert (complete[1], "DL1") in memberships(conn)


@pytest.mark.parametrize(
    "given", ["1" + "0" * 400, "87601", "-1", "1e3", "24 hours"], ids=["401 digits", "87601", "-1", "1e3", "24 hours"]
)
def test_a_verification_period_that_is_not_a_number_of_hours_is_refused_in_one_line(conn, db_url, given):
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(resources.alembic_ini()), "-x", f"release_min_hours={given}",
         "-x", "release_override=INC-1", "upgrade", "head"],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "not a number of hours from 0 to 87600" in done.stderr, given
    assert revision(conn) == release.PRE_RELEASE_REVISION


@pytest.mark.parametrize(
    "edit",
    [
        "after = '\"text\"'",
        "after = '[1, 2]'",
        "after = jsonb_set(after, '{blockers}', '7')",
        "after = jsonb_set(after, '{min_hours}', ('1' || repeat('0', 400))::jsonb)",
        "after = jsonb_set(after, '{check_passed}', '\"yes\"')",
        "before = '\"text\"'",
    ],
)
def test_a_hand_edited_release_record_never_breaks_a_command(conn, capsys, db_url, complete, edit):
    assert run_cli(capsys, db_url, "db", "upgrade", "--by", "rita")[0] == 0
    conn.execute(f"UPDATE billing_sync.feature_flag_events SET {edit} WHERE operation = 'RELEASE'")
    for args in (
        ("flag", "history", FLAG),
        ("flag", "list"),
        ("verify",),
        ("rollout", "check"),
        ("rollout", "status"),
        ("rollout", "report"),
        ("doctor",),
        ("errors",),
    ):
        code, out, err = run_cli(capsys, db_url, *args)
        assert code in (0, 1) and "internal error" not in err and "Traceback" not in out + err, (args, err)
    code, _, err = run_cli(capsys, db_url, "flag", "disable", FLAG)
    assert code == 2 and "was released" in err and "overridden: None" not in err


@pytest.mark.parametrize(
    "edit",
    [
        "jsonb_set(before, '{percentage}', '\"ten\"')",
        "jsonb_set(before, '{percentage}', '250')",
        "jsonb_set(before, '{actors}', '{\"customer_id\": 1}')",
        'jsonb_set(before, \'{actors}\', \'[{"customer_id": 1}, {"customer_id": "x"}, 3]\')',
        'jsonb_set(before, \'{actors}\', \'[{"customer_id": 1, "created_at": "2026-02-31T10:00:00+00:00"}]\')',
        "'\"text\"'",
    ],
)
def test_the_rollback_of_a_release_survives_a_hand_edited_record(conn, capsys, db_url, complete, edit):
    assert run_cli(capsys, db_url, "db", "upgrade", "--by", "rita")[0] == 0
    conn.execute(f"UPDATE billing_sync.feature_flag_events SET before = {edit} WHERE operation = 'RELEASE'")
    code, _, err = run_cli(capsys, db_url, "db", "downgrade", release.PRE_RELEASE_REVISION, "--yes")
    assert (code, err) == (0, "")
    flag = flags.get_flag(conn, FLAG)
    assert flag.enabled and flag.everyone and 0 <= flag.percentage <= 100
    assert set(flag.actors) <= {1}


def test_after_the_rollback_of_a_release_the_rollout_check_names_the_release(conn, capsys, db_url, complete):
    assert run_cli(capsys, db_url, "db", "upgrade", "--by", "rita")[0] == 0
    assert run_cli(capsys, db_url, "db", "downgrade", release.PRE_RELEASE_REVISION, "--yes")[0] == 0
    _, out, _ = run_cli(capsys, db_url, "rollout", "check")
    assert "last release event" in out and "kill-switch event" not in out.split("last release event")[1][:40]


def test_a_skip_recorded_while_the_release_waits_stops_it(conn, connect, db_url, complete):
    def skip() -> None:
        insert_customer(connect(), "not an account!", "late@example.com")  # waits one lock attempt at most

    code, err = release_while_held(conn, connect, db_url, complete[0], skip)
    assert code == 1
    assert "0 flag change(s) and 1 sync skip(s) committed that its check did not see" in err
    assert revision(conn) == release.PRE_RELEASE_REVISION
