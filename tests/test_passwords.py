"""sync-admin never prints a password: db.mask on every URL shape, and the CLI's error paths (connection,
alembic, failed migrations, malformed URLs, logs) with a password in the URL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import psycopg
import pytest
from helpers import run_cli
from pgtools import PORTAL_CUSTOMERS, fresh_database, url_as

from sync_admin import db, resources

SECRET = "Sw0rdf1sh-9876"

# (text, what mask must make of it)
SHAPES = {
    "url": (
        f"postgresql://app:{SECRET}@db.example.com:5432/billing",
        "postgresql://app:***@db.example.com:5432/billing",
    ),
    "postgres scheme": (f"postgres://app:{SECRET}@h/db", "postgres://app:***@h/db"),
    "sqlalchemy psycopg": (f"postgresql+psycopg://app:{SECRET}@h/db", "postgresql+psycopg://app:***@h/db"),
    "sqlalchemy psycopg2": (f"postgresql+psycopg2://app:{SECRET}@h/db", "postgresql+psycopg2://app:***@h/db"),
    "upper case scheme": (f"POSTGRESQL://app:{SECRET}@h/db", "POSTGRESQL://app:***@h/db"),
    "percent-encoded": ("postgresql://app:p%40ss%3Aw0rd%2F@h/db", "postgresql://app:***@h/db"),
    "raw @ in password": ("postgresql://app:p@ssw0rd@h/db", "postgresql://app:***@h/db"),
    # Shapes that are no URL at all: masking must not depend on parsing (issue 12).
    "scheme without colon": (f"postgresql//alice:{SECRET}@localhost/prod", "postgresql//alice:***@localhost/prod"),
    "scheme with one slash": (f"postgresql:/alice:{SECRET}@localhost/prod", "postgresql:/alice:***@localhost/prod"),
    "no scheme": (f"alice:{SECRET}@host/db", "alice:***@host/db"),
    "quoted in a message": (f"cannot use '(alice:{SECRET}@h)'", "cannot use '(alice:***@h)'"),
    "password starting with a slash": (f"postgres:/bob:/{SECRET}@h", "postgres:/bob:***@h"),
    "raw : in password": ("postgresql://app:pa:ss@h/db", "postgresql://app:***@h/db"),
    "raw / ? # in password": ("postgresql://app:p/a?s#s@h/db", "postgresql://app:***@h/db"),
    "quote in password": ("postgresql://app:it's@h/db", "postgresql://app:***@h/db"),
    "no user": (f"postgresql://:{SECRET}@h/db", "postgresql://:***@h/db"),
    "several hosts": (f"postgresql://app:{SECRET}@h1:5432,h2:5433/db", "postgresql://app:***@h1:5432,h2:5433/db"),
    "ipv6": (f"postgresql://app:{SECRET}@[::1]:5432/db", "postgresql://app:***@[::1]:5432/db"),
    "socket in query": (
        f"postgresql://app:{SECRET}@/db?host=/var/run/postgresql",
        "postgresql://app:***@/db?host=/var/run/postgresql",
    ),
    "password in query": (
        f"postgresql://app@h/db?password={SECRET}&sslmode=require",
        "postgresql://app@h/db?password=***&sslmode=require",
    ),
    "password last in query": (f"postgresql://app@h/db?sslmode=require&PASSWORD={SECRET}", None),
    "keyword conninfo": (f"host=h password={SECRET} user=app", "host=h password=*** user=app"),
    "keyword with spaces": (f"host=h password = {SECRET} user=app", "host=h password = *** user=app"),
    "quoted keyword": ("host=h password='se cr\\'et' user=app", "host=h password=*** user=app"),
    "quoted url": (f"'postgresql://app:{SECRET}@h/db'", "'postgresql://app:***@h/db'"),
    "in a message": (
        f"cannot connect to postgresql://app:{SECRET}@h/db: connection refused",
        "cannot connect to postgresql://app:***@h/db: connection refused",
    ),
    "two urls": (
        f"postgresql://a:{SECRET}@h/x and postgresql://b:{SECRET}2@h/y",
        "postgresql://a:***@h/x and postgresql://b:***@h/y",
    ),
}
UNCHANGED = [
    "postgresql://app@h:5432/db",
    "postgresql://h:5432/db",
    "postgresql://app:@h/db",
    "postgresql:///db?host=/tmp",
    "https://sqlalche.me/e/20/e3q8",
    'password authentication failed for user "app"',
]


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_mask_hides_the_password_of_every_url_shape(shape):
    text, expected = SHAPES[shape]
    masked = db.mask(text)
    assert SECRET not in masked and "ssw0rd" not in masked and "se cr" not in masked
    if expected is not None:
        assert masked == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_mask_leaves_text_without_a_password_alone(text):
    assert db.mask(text) == text


def test_a_password_sync_admin_was_given_is_hidden_wherever_it_shows_up():
    password = "Unusual-Pass-4711"
    db.libpq_url(f"postgresql://app:{password}@h/db")
    assert db.mask(f"libpq said: bad password {password!r}") == "libpq said: bad password '***'"


# --- the CLI ---------------------------------------------------------------------------------------


def test_a_malformed_url_that_quotes_the_password_is_refused_without_it(capsys):
    code, out, err = run_cli(capsys, "postgresql://app:two words@h/db", "flag", "list")
    assert code == 2
    assert "two words" not in out + err and "malformed database URL" in err


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql//alice:{SECRET}@localhost/prod",
        f"postgresql:/alice:{SECRET}@localhost/prod",
        f"alice:{SECRET}@host/db",
        f"postgresql://alice:{SECRET}",
        f"  postgresql://alice:{SECRET}@",
        f"postgresql://localhost/db?password={SECRET}&x&y=1",
        f"postgresql://localhost/db?password={SECRET[:6]} {SECRET[6:]}&sslmode=bogus",
    ],
)
def test_a_url_of_any_shape_is_refused_in_one_line_without_the_password(url):
    # A process of its own: in this one, earlier tests have taught db.mask the secret already.
    done = subprocess.run(
        [sys.executable, "-c", "from sync_admin.cli import main; main()", "--database-url", url, "flag", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "SYNC_ADMIN_DATA_DIR": "/nonexistent-so-no-embedded-server-starts"},
        timeout=60,
    )
    assert done.returncode in (2, 3), done  # malformed, or (the last) well-formed but no server there
    shown = done.stdout + done.stderr
    assert SECRET not in shown and SECRET[:6] not in shown and SECRET[6:] not in shown, shown
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_url_with_an_unencoded_at_sign_is_refused_without_the_password(capsys):
    code, out, err = run_cli(capsys, "postgresql://app:p@ssw0rd@h/db", "db", "current")
    assert code == 2
    assert "ssw0rd" not in out + err and "%40" in err


@pytest.mark.parametrize(
    "args",
    [("db", "upgrade"), ("db", "downgrade", "base"), ("db", "current"), ("flag", "list")],
    ids=lambda args: " ".join(args),
)
def test_an_unreachable_database_is_reported_without_the_password(capsys, args):
    code, out, err = run_cli(capsys, f"postgresql://app:{SECRET}@127.0.0.1:1/db", *args)
    assert code == 3, err
    assert SECRET not in out + err and "app:***@127.0.0.1:1/db" in err


def the_test_database_with_a_password(conn, url: str) -> str:
    """The URL with a password in it: the real one on a server that checks passwords, SECRET on a trusting one."""
    return url_as(url, conn.info.user, conn.info.password or SECRET)


@pytest.mark.parametrize(
    "args",
    [("db", "upgrade", "9999"), ("db", "downgrade", "no-such-revision"), ("db", "upgrade", "0001:0002")],
    ids=lambda args: " ".join(args),
)
def test_alembic_errors_are_reported_without_the_password(conn, db_url, capsys, args):
    url = the_test_database_with_a_password(conn, db_url)
    code, out, err = run_cli(capsys, url, *args)
    assert code == 2, err
    assert err.startswith(("error: alembic:", "error: unknown revision")) and err.count("\n") == 1
    assert (conn.info.password or SECRET) not in out + err


def test_a_failed_migration_is_reported_without_the_password(conn, db_url, capsys):
    with fresh_database(conn, db_url, "CREATE TABLE public.customers (id integer PRIMARY KEY)") as fresh:
        url = the_test_database_with_a_password(conn, fresh)
        code, out, err = run_cli(capsys, url, "db", "upgrade")
    assert code == 1
    assert "migration failed and its revision was rolled back" in err
    assert (conn.info.password or SECRET) not in out + err


def test_database_url_from_the_environment_is_masked_too(capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{SECRET}@127.0.0.1:1/db")
    code, out, err = run_cli(capsys, None, "db", "current")
    assert code == 3 and SECRET not in out + err


def test_log_lines_are_masked(capsys):
    run_cli(capsys, None, "--help")  # installs sync-admin's log handler
    capsys.readouterr()
    logging.getLogger("sync_admin.test").warning("retrying postgresql://app:%s@h/db", SECRET)
    err = capsys.readouterr().err
    assert err == "sync-admin: retrying postgresql://app:***@h/db\n"


def test_the_lock_retry_warnings_of_an_upgrade_name_no_url(conn, db_url, capsys, monkeypatch):
    from sync_admin import migration_ops

    monkeypatch.setattr(migration_ops, "LOCK_RETRY_TIMINGS", ((20, 0.01),) * 2)
    with fresh_database(conn, db_url, PORTAL_CUSTOMERS) as fresh, psycopg.connect(fresh) as holder:
        holder.execute("UPDATE public.customers SET name = 'busy' WHERE id = 1")
        url = the_test_database_with_a_password(conn, fresh)
        code, out, err = run_cli(capsys, url, "db", "upgrade")
        holder.rollback()
    assert code == 1 and err.count("sync-admin: LOCK TABLE public.customers") == 2
    assert (conn.info.password or SECRET) not in out + err


def test_plain_alembic_with_a_password_in_database_url_does_not_print_it(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:1/db"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "current"],
        capture_output=True,
        text=True,
        env=env,
        cwd=resources.project_root(),
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert SECRET not in result.stdout + result.stderr
