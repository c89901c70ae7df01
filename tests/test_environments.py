"""Named environments (issue 13): the configuration files, their precedence, the three ways to name a database,
one-line refusals, and `--env` on the commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from envtools import isolate, password_to_pgpass, service_file, user_file, write
from helpers import FLAG, run_cli
from psycopg import conninfo

from sync_admin import environments
from sync_admin.errors import BadInput

SECRET = "Sw0rdf1sh-4242"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/x"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    return isolate(tmp_path, monkeypatch)


def one_line_error(code: int, out: str, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out + err, err
    return lines[0]


# --- the files --------------------------------------------------------------------------------------


def test_the_project_file_wins_over_the_user_file_and_the_order_is_the_tables(project, tmp_path):
    write(
        user_file(tmp_path),
        '[environments.production]\nservice = "user_production"\n'
        '[environments.staging]\nurl_env = "USER_STAGING_URL"\n'
        '[environments.dev]\nurl = "postgresql://me@localhost/dev"\n',
    )
    write(
        project / "sync-admin.toml",
        '[environments.staging]\nurl_env = "STAGING_DATABASE_URL"\n[environments.production]\nservice = "billing"\n',
    )

    config = environments.load()

    assert [(e.name, e.kind, e.value) for e in config.environments] == [
        ("staging", "url_env", "STAGING_DATABASE_URL"),
        ("production", "service", "billing"),
        ("dev", "url", "postgresql://me@localhost/dev"),
    ]
    assert config.get("staging").file == project / "sync-admin.toml"
    assert config.get("dev").file == user_file(tmp_path)
    assert config.rollout == ("staging", "production", "dev")
    assert [e.name for e in config.before("production")] == ["staging"]
    assert config.before("staging") == ()


def test_the_rollout_order_is_the_projects_when_both_give_one(project, tmp_path):
    write(user_file(tmp_path), '[environments.qa]\nservice = "qa"\n[rollout]\norder = ["qa"]\n')
    write(
        project / "sync-admin.toml",
        '[rollout]\norder = ["staging", "production"]\n'
        '[environments.production]\nservice = "p"\n[environments.staging]\nservice = "s"\n',
    )
    config = environments.load()
    assert config.rollout == ("staging", "production")
    assert [e.name for e in config.ordered] == ["staging", "production", "qa"]  # qa: configured, not in the order
    assert config.before("qa") == ()


def test_sync_admin_config_names_one_file_instead_of_both(project, tmp_path, monkeypatch):
    write(project / "sync-admin.toml", '[environments.staging]\nservice = "s"\n')
    write(user_file(tmp_path), '[environments.dev]\nservice = "d"\n')
    named = write(tmp_path / "elsewhere.toml", '[environments.ci]\nurl_env = "CI_DATABASE_URL"\n')
    monkeypatch.setenv("SYNC_ADMIN_CONFIG", str(named))

    config = environments.load()

    assert [e.name for e in config.environments] == ["ci"]
    assert config.files == (named,)
    monkeypatch.setenv("SYNC_ADMIN_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(BadInput, match=r"missing.toml: no such file \(SYNC_ADMIN_CONFIG names it\)"):
        environments.load()


def test_no_configuration_is_no_environment(project, capsys, db_url):
    assert environments.load().environments == ()
    code, out, err = run_cli(capsys, None, "rollout", "envs")
    assert (code, err) == (0, "")
    assert out.startswith("no environment configured (")
    # and every command works as before
    assert run_cli(capsys, db_url, "flag", "status", FLAG)[0] == 0


BAD = {
    "bad toml": ('[environments.staging\nservice = "s"\n', "sync-admin.toml: not valid TOML: "),
    "unknown top-level key": ('[environment.staging]\nservice = "s"\n', "sync-admin.toml: unknown key 'environment'"),
    "unknown environment key": (
        '[environments.staging]\nservice = "s"\nhost = "h"\n',
        "sync-admin.toml: environments.staging.host: unknown key (known: url_env, service, url)",
    ),
    "two sources": (
        '[environments.staging]\nservice = "s"\nurl_env = "X"\n',
        "sync-admin.toml: environments.staging: give exactly one of url_env, service, url (found 2)",
    ),
    "no source": ("[environments.staging]\n", "environments.staging: give exactly one of url_env, service, url"),
    "not a string": ("[environments.staging]\nservice = 5\n", "environments.staging.service: must be a non-empty"),
    "not a table": ('[environments]\nstaging = "s"\n', "environments.staging: must be a table"),
    "bad name": ('[environments."stag ing"]\nservice = "s"\n', "environment name 'stag ing'"),
    "order names an unknown environment": (
        '[environments.staging]\nservice = "s"\n[rollout]\norder = ["staging", "prod"]\n',
        "sync-admin.toml: rollout.order names 'prod', which no file defines",
    ),
    "order not a list": ('[rollout]\norder = "staging"\n', "rollout.order must be a list"),
    "unknown rollout key": ('[rollout]\nsteps = ["a"]\n', "sync-admin.toml: rollout.steps: unknown key"),
    "malformed url": (
        '[environments.dev]\nurl = "mysql://me@localhost/dev"\n',
        "sync-admin.toml: environments.dev.url: not a PostgreSQL URL",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(project, capsys, case):
    text, expected = BAD[case]
    write(project / "sync-admin.toml", text)
    for args in (["rollout", "envs"], ["--env", "staging", "flag", "list"], ["rollout", "status"]):
        line = one_line_error(*run_cli(capsys, None, *args))
        assert line.startswith(f"error: {project / 'sync-admin.toml'}: "), line
        assert expected in line, line


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}@db.example.com/billing",
        f"postgresql://app@db.example.com/billing?sslmode=require&password={SECRET}",
    ],
)
def test_a_password_in_the_file_is_refused_without_showing_it(project, capsys, url):
    write(project / "sync-admin.toml", f'[environments.production]\nurl = "{url}"\n')
    for args in (["rollout", "envs"], ["--env", "production", "flag", "list"]):
        code, out, err = run_cli(capsys, None, *args)
        line = one_line_error(code, out, err)
        assert "environments.production.url:" in line and "carries a password" in line and "pgpass" in line
        assert SECRET not in out + err


# --- --env ------------------------------------------------------------------------------------------


def test_url_env_takes_the_url_from_the_variable(project, capsys, conn, db_url, monkeypatch):
    write(project / "sync-admin.toml", '[environments.staging]\nurl_env = "STAGING_DATABASE_URL"\n')
    missing = one_line_error(*run_cli(capsys, None, "--env", "staging", "flag", "list"))
    assert missing == (
        f"error: {project / 'sync-admin.toml'}: environments.staging.url_env: the variable STAGING_DATABASE_URL"
        " is not set; export it or pick another --env"
    )

    monkeypatch.setenv("STAGING_DATABASE_URL", db_url)
    code, out, err = run_cli(capsys, None, "--env", "staging", "flag", "enable", FLAG, "--percentage", "20")
    assert (code, err) == (0, ""), out
    assert conn.execute("SELECT percentage FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)).fetchone() == (
        20,
    )
    code, out, _ = run_cli(capsys, None, "--env", "staging", "flag", "status", FLAG)
    assert code == 0 and "percentage: 20 %" in out
    code, out, _ = run_cli(capsys, None, "rollout", "envs")
    assert code == 0 and "$STAGING_DATABASE_URL = postgresql://" in out

    monkeypatch.setenv("STAGING_DATABASE_URL", "not a url")
    line = one_line_error(*run_cli(capsys, None, "--env", "staging", "flag", "list"))
    assert "environments.staging.url_env: $STAGING_DATABASE_URL: not a PostgreSQL URL" in line


def test_url_env_masks_the_password_of_the_variable(project, capsys, monkeypatch):
    write(project / "sync-admin.toml", '[environments.prod]\nurl_env = "PROD_URL"\n')
    monkeypatch.setenv("PROD_URL", UNREACHABLE)
    code, out, _ = run_cli(capsys, None, "rollout", "envs")
    assert code == 0 and "$PROD_URL = postgresql://u:***@127.0.0.1:1/x" in out
    code, out, err = run_cli(capsys, None, "--env", "prod", "flag", "list")
    assert "cannot connect to postgresql://u:***@127.0.0.1:1/x" in one_line_error(code, out, err, 3)
    assert SECRET not in out + err


def test_service_connects_through_pg_service_conf(project, tmp_path, capsys, conn, db_url, monkeypatch):
    """libpq reads the service's parameters; no URL or password is in sync-admin's configuration at all."""
    url = password_to_pgpass(db_url, monkeypatch, tmp_path)  # a server that asks for one: the password in .pgpass
    monkeypatch.setenv("PGSERVICEFILE", str(service_file(tmp_path / "pg_service.conf", {"billing_staging": url})))
    write(project / "sync-admin.toml", '[environments.staging]\nservice = "billing_staging"\n')

    code, out, err = run_cli(capsys, None, "--env", "staging", "flag", "enable", FLAG, "--everyone", "--by", "sam")
    assert (code, err) == (0, ""), out
    assert conn.execute("SELECT enabled, everyone FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)).fetchone()
    actor = conn.execute("SELECT actor FROM billing_sync.feature_flag_events ORDER BY id DESC LIMIT 1").fetchone()
    assert actor == ("sam",)
    # the migrations (SQLAlchemy) take the service too
    code, out, err = run_cli(capsys, None, "--env", "staging", "db", "current")
    assert (code, err) == (0, "") and "at revision" in out
    code, out, _ = run_cli(capsys, None, "rollout", "envs")
    assert code == 0 and "service billing_staging (pg_service.conf)" in out

    write(project / "sync-admin.toml", '[environments.staging]\nservice = "no_such_service"\n')
    line = one_line_error(*run_cli(capsys, None, "--env", "staging", "flag", "list"), 3)
    assert "no_such_service" in line


def test_a_url_without_password_in_the_file_is_used(project, tmp_path, capsys, db_url, monkeypatch):
    url = password_to_pgpass(db_url, monkeypatch, tmp_path)  # a server that asks for one: the password in .pgpass
    assert not conninfo.conninfo_to_dict(url).get("password")
    write(project / "sync-admin.toml", f'[environments.dev]\nurl = "{url}"\n')
    code, out, err = run_cli(capsys, None, "--env", "dev", "flag", "list")
    assert (code, err) == (0, "") and FLAG in out


def test_env_and_database_url_together_are_refused(project, capsys, db_url):
    write(project / "sync-admin.toml", '[environments.staging]\nservice = "s"\n')
    line = one_line_error(*run_cli(capsys, db_url, "--env", "staging", "flag", "list"))
    assert line.startswith("error: --env and --database-url both name the database; give one of them")


def test_an_unknown_environment_names_the_files_and_the_known_ones(project, tmp_path, capsys):
    line = one_line_error(*run_cli(capsys, None, "--env", "staging", "flag", "list"))
    assert "unknown environment 'staging' (--env): no environment is configured (" in line
    assert str(project / "sync-admin.toml") in line and str(user_file(tmp_path)) in line

    write(
        project / "sync-admin.toml", '[environments.staging]\nservice = "s"\n[environments.production]\nservice = "p"\n'
    )
    line = one_line_error(*run_cli(capsys, None, "--env", "prod", "flag", "list"))
    assert (
        line
        == f"error: unknown environment 'prod' (--env): {project / 'sync-admin.toml'} configure staging, production"
    )
