"""`sync-admin`: exit codes, one-line errors, no password ever printed, audited flag changes.

Most tests call the real entry point in-process (helpers.run_cli); a few run the installed
console script in a subprocess, exactly as a person or CI would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from helpers import FLAG, run_cli
from psycopg import sql
from psycopg.rows import dict_row

from sync_admin import db, flags
from sync_admin.cli import cli

SECRET = "secret"
UNREACHABLE_URL = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
SYNC_ADMIN = str(Path(sys.executable).parent / "sync-admin")  # the console script of this environment
SUBPROCESS_TIMEOUT_SECONDS = 120


def latest_events(conn: psycopg.Connection, after_id: int) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT flag_name, operation, database_user, application_name, actor, reason, before, after"
        " FROM billing_sync.feature_flag_events WHERE id > %s ORDER BY id",
        (after_id,),
    ).fetchall()


def last_event_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM billing_sync.feature_flag_events").fetchone()[0]


def flag_state(conn: psycopg.Connection) -> tuple:
    return conn.execute(
        "SELECT enabled, everyone, percentage FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)
    ).fetchone()


def assert_one_line_error(out: str, err: str) -> None:
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert SECRET not in out + err


def sync_admin(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script; never falls back to a real embedded server of the user."""
    env = {k: v for k, v in os.environ.items() if k != db.DATABASE_URL_ENV}
    env["SYNC_ADMIN_DATA_DIR"] = str(tmp_path / "embedded")
    return subprocess.run(
        [SYNC_ADMIN, *args], capture_output=True, text=True, env=env, timeout=SUBPROCESS_TIMEOUT_SECONDS, check=False
    )


@pytest.fixture
def empty_db_url(conn: psycopg.Connection, db_url: str) -> Iterator[str]:
    """A fresh database on the same server that no migration has touched."""
    name = f"not_migrated_{uuid.uuid4().hex[:12]}"
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield db.with_database(db_url, name)
    conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# --- changes ------------------------------------------------------------------------------------


def test_enable_and_disable_write_one_audit_row_each_with_actor_reason_and_application(conn, capsys, db_url):
    start = last_event_id(conn)
    code, out, err = run_cli(
        capsys, db_url, "flag", "enable", FLAG, "--everyone", "--reason", "INC-7 go", "--by", "pat"
    )
    assert (code, err) == (0, "")
    assert f"{FLAG}: ON for everyone" in out
    assert flag_state(conn) == (True, True, 0)

    code, out, err = run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC-8 stop", "--by", "sam")
    assert (code, err) == (0, "")
    assert "OFF" in out
    assert flag_state(conn) == (False, True, 0)  # the kill switch keeps the gate

    enabled, disabled = latest_events(conn, start)
    session_user = conn.execute("SELECT session_user").fetchone()[0]
    assert {k: enabled[k] for k in ("flag_name", "operation", "database_user", "application_name")} == {
        "flag_name": FLAG,
        "operation": "UPDATE",
        "database_user": session_user,
        "application_name": "sync-admin",
    }
    assert (enabled["actor"], enabled["reason"]) == ("pat", "INC-7 go")
    assert (enabled["before"]["enabled"], enabled["after"]["enabled"]) == (False, True)
    assert (disabled["actor"], disabled["reason"], disabled["application_name"]) == ("sam", "INC-8 stop", "sync-admin")
    assert (disabled["before"]["enabled"], disabled["after"]["enabled"]) == (True, False)


def test_a_change_that_changes_nothing_writes_no_audit_row(conn, capsys, db_url):
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
    start = last_event_id(conn)
    code, out, _ = run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone", "--reason", "again")
    assert code == 0
    assert "nothing changed" in out
    assert latest_events(conn, start) == []


def test_without_by_the_actor_is_the_os_user(conn, capsys, db_url):
    start = last_event_id(conn)
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
    [event] = latest_events(conn, start)
    assert event["actor"] == flags.default_actor()
    assert event["reason"] is None


# --- reading ------------------------------------------------------------------------------------


def test_flag_list_and_status(conn, capsys, db_url):
    conn.execute("INSERT INTO public.customers (email) VALUES ('a@example.com'), ('b@example.com')")
    code, out, err = run_cli(capsys, db_url, "flag", "list")
    assert (code, err) == (0, "")
    assert FLAG in out and "OFF" in out

    run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone", "--by", "pat", "--reason", "go")
    code, out, err = run_cli(capsys, db_url, "flag", "status", FLAG)
    assert (code, err) == (0, "")
    assert f"{FLAG}: ON for everyone (2 customers)" in out
    assert "last change:" in out and "by pat (go)" in out


def test_flag_history_in_every_format(conn, capsys, db_url):
    run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone", "--by", "pat", "--reason", "go | now")
    run_cli(capsys, db_url, "flag", "disable", FLAG, "--by", "sam", "--reason", "stop")

    code, out, err = run_cli(capsys, db_url, "flag", "history", FLAG, "--format", "json")
    assert (code, err) == (0, "")
    history = json.loads(out)
    assert [(e["operation"], e["actor"], e["reason"]) for e in history][-2:] == [
        ("UPDATE", "pat", "go | now"),
        ("UPDATE", "sam", "stop"),
    ]
    assert history[0]["operation"] == "INSERT"  # created by the migration
    assert all(e["flag_name"] == FLAG for e in history)
    assert history[-1]["application_name"] == "sync-admin"

    code, out, _ = run_cli(capsys, db_url, "flag", "history", FLAG, "--format", "json", "--limit", "1")
    assert code == 0
    assert [(e["actor"], e["reason"]) for e in json.loads(out)] == [("sam", "stop")]

    code, out, _ = run_cli(capsys, db_url, "flag", "history", FLAG, "--format", "markdown")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == f"#### History of `{FLAG}`"
    assert lines[2].startswith("| when | operation | change | actor | reason |")
    assert len(lines) == 4 + len(history)
    assert "go \\| now" in out  # a pipe in a reason cannot break the table
    assert "enabled: false -> true" in out

    code, out, _ = run_cli(capsys, db_url, "flag", "history", FLAG)
    assert code == 0
    assert f"history of {FLAG}" in out and "pat" in out and "stop" in out


def test_history_outlives_a_deleted_flag(conn, capsys, db_url):
    conn.execute("INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('retired_flag', true)")
    conn.execute("DELETE FROM billing_sync.feature_flags WHERE name = 'retired_flag'")
    code, out, _ = run_cli(capsys, db_url, "flag", "history", "retired_flag", "--format", "json")
    assert code == 0
    assert [e["operation"] for e in json.loads(out)] == ["INSERT", "DELETE"]


def test_db_current_names_the_head_and_masks_the_password(conn, capsys, db_url):
    info = conn.info
    password = info.password or SECRET  # a trust server ignores it; a password server needs the real one
    url = db.make_url(host=info.host, port=info.port, user=info.user, dbname=info.dbname, password=password)
    code, out, err = run_cli(capsys, url, "db", "current")
    assert (code, err) == (0, "")
    assert "at revision 0012 (the revision before the release" in out and "***" in out
    assert password not in out
    code, out, err = run_cli(capsys, url, "flag", "enable", FLAG, "--everyone")
    assert code == 0 and password not in out + err


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["flag", "enable", "no_such_flag"],
        ["flag", "disable", "no_such_flag"],
        ["flag", "history", "no_such_flag"],
        ["flag", "history", FLAG, "--format", "xml"],
        ["flag", "history", FLAG, "--limit", "0"],
        ["flag", "enable"],
        ["flag", "frobnicate"],
        ["--database-url", f"mysql://u:{SECRET}@127.0.0.1:3306/x", "flag", "list"],
        ["--database-url", f"postgresql://u:{SECRET}@127.0.0.1:notaport/x", "flag", "list"],
        ["--database-url", f"host=127.0.0.1 password={SECRET}", "flag", "list"],
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(conn, capsys, db_url, args):
    start = last_event_id(conn)
    flag_before = flag_state(conn)
    url = None if args[0] == "--database-url" else db_url
    code, out, err = run_cli(capsys, url, *args)
    assert code == 2, (out, err)
    assert_one_line_error(out, err)
    assert out == ""
    assert flag_state(conn) == flag_before
    assert latest_events(conn, start) == []


@pytest.mark.parametrize(
    "args",
    [
        ["flag", "list"],
        ["flag", "status", FLAG],
        ["flag", "enable", FLAG, "--everyone", "--reason", SECRET],
        ["flag", "history", FLAG],
        ["db", "current"],
        ["db", "upgrade", "head"],
        ["db", "downgrade", "base"],
    ],
)
def test_an_unreachable_database_exits_3_without_the_password(capsys, args):
    code, out, err = run_cli(capsys, UNREACHABLE_URL, *args)
    assert code == 3, (out, err)
    assert_one_line_error(out, err)
    assert "u:***@127.0.0.1:1/x" in err


def test_a_database_that_is_not_migrated_exits_3_and_says_what_to_do(capsys, empty_db_url):
    for args in (
        ["flag", "list"],
        ["flag", "status", FLAG],
        ["flag", "enable", FLAG, "--everyone"],
        ["flag", "history", FLAG],
    ):
        code, out, err = run_cli(capsys, empty_db_url, *args)
        assert code == 3, (args, out, err)
        assert_one_line_error(out, err)
        assert "sync-admin db upgrade" in err
    code, out, _ = run_cli(capsys, empty_db_url, "db", "current")
    assert code == 0 and "base (nothing installed)" in out
    assert run_cli(capsys, empty_db_url, "db", "upgrade")[0] == 0
    code, out, _ = run_cli(capsys, empty_db_url, "flag", "list")
    assert code == 0 and FLAG in out


# --- the installed command ----------------------------------------------------------------------


def test_installed_command_enables_the_flag_with_an_audit_row(conn, db_url, tmp_path):
    start = last_event_id(conn)
    result = sync_admin(
        "--database-url",
        db_url,
        "flag",
        "enable",
        FLAG,
        "--everyone",
        "--reason",
        "from CI",
        "--by",
        "ci-bot",
        tmp_path=tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert flag_state(conn) == (True, True, 0)
    [event] = latest_events(conn, start)
    assert (event["actor"], event["reason"], event["application_name"]) == ("ci-bot", "from CI", "sync-admin")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--database-url", f"mysql://u:{SECRET}@localhost/x", "flag", "list"], 2),
        (["--database-url", UNREACHABLE_URL, "flag", "history", FLAG, "--format", "bogus"], 2),
        (["--database-url", UNREACHABLE_URL, "flag", "list"], 3),
        (["--database-url", UNREACHABLE_URL, "db", "current"], 3),
    ],
)
def test_installed_command_exit_codes_and_one_line_errors(tmp_path, args, code):
    result = sync_admin(*args, tmp_path=tmp_path)
    assert result.returncode == code, result
    assert_one_line_error(result.stdout, result.stderr)
    assert result.stdout == ""


def test_installed_command_with_debug_shows_the_traceback_but_not_the_password(tmp_path):
    result = sync_admin("--debug", "--database-url", UNREACHABLE_URL, "flag", "list", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert SECRET not in result.stdout + result.stderr


# --- click's own runner -------------------------------------------------------------------------


def test_click_runner_reads_and_switches_flags(conn, db_url):
    runner = CliRunner()
    result = runner.invoke(cli, ["--database-url", db_url, "flag", "enable", FLAG, "--everyone", "--by", "runner"])
    assert result.exit_code == 0, result.output
    assert flag_state(conn) == (True, True, 0)
    result = runner.invoke(cli, ["--database-url", db_url, "flag", "list"])
    assert result.exit_code == 0 and FLAG in result.output
    result = runner.invoke(cli, ["--database-url", db_url, "flag", "history", FLAG, "--format", "bogus"])
    assert result.exit_code == 2


def test_terminal_output_escapes_control_characters_and_markup_from_the_database(conn, capsys, db_url):
    """A reason or actor is anyone's text: an escape sequence, a newline that fakes a status line, a
    right-to-left override or rich markup must reach the terminal as visible text, one value on one line."""
    reason = "\x1b[31mRED\nkill switch: ON\u202e[bold]x[/bold]"
    code, _, err = run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone", "--by", "eve\x07", "--reason", reason)
    assert (code, err) == (0, "")
    for args in (["flag", "status", FLAG], ["flag", "history", FLAG], ["flag", "list"]):
        code, out, err = run_cli(capsys, db_url, *args)
        assert (code, err) == (0, ""), args
        assert not set(out) & {"\x1b", "\x07", "\u202e"}, (args, out)
        assert not [line for line in out.splitlines() if line.strip().startswith("kill switch: ON")], (args, out)
    status = run_cli(capsys, db_url, "flag", "status", FLAG)[1]
    assert "by eve\\x07 (\\x1b[31mRED\\nkill switch: ON\\u202e[bold]x[/bold])" in status


def test_help_loads_no_database_driver_sqlalchemy_or_rich():
    """Start-up time (issue 12): `sync-admin --help` imports only click; bench/startup.py measures the time."""
    code = (
        "import sys; from sync_admin.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'sqlalchemy', 'alembic', 'rich'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ["flag", "explain", FLAG, "99999999999999999999"],
        ["flag", "enable", FLAG, "--actor", "9223372036854775808"],
        ["flag", "disable", FLAG, "--actor", "-5"],
    ],
)
def test_a_customer_id_out_of_bigint_range_is_bad_input_with_or_without_debug(capsys, db_url, args):
    for debug in ([], ["--debug"]):
        code, out, err = run_cli(capsys, db_url, *debug, *args)
        assert code == 2, (debug, out, err)
        assert err.strip().splitlines()[-1].startswith("error: Invalid value for")


def test_debug_keeps_the_exit_code_and_adds_the_traceback(capsys, db_url):
    code, _, err = run_cli(capsys, UNREACHABLE_URL, "--debug", "flag", "list")
    assert code == 3
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: cannot connect to")
