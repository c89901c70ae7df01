"""Offline mode: the SQL `sync-admin db sql` (alembic --sql) prints is complete, needs no database to be
printed, and psql builds from it exactly the schema the online migrations build."""

from __future__ import annotations

import pytest
from helpers import FLAG, run_cli
from pgtools import fresh_database, psql, schema_dump, server_major

from sync_admin import migrate
from sync_admin.migration_ops import MIGRATION_LOCK_TIMEOUT
from sync_admin.release import PRE_RELEASE_REVISION as PRE_RELEASE

UNREACHABLE = "postgresql://deployer:s3cr3t-offline@127.0.0.1:1/production"


def test_the_offline_sql_is_printed_without_any_database(capsys):
    # A URL that cannot be reached: printing the SQL must not even try.
    code, script, err = run_cli(capsys, UNREACHABLE, "db", "sql")
    assert (code, err) == (0, "")
    assert "s3cr3t-offline" not in script
    assert script.startswith(f"SET lock_timeout = '{MIGRATION_LOCK_TIMEOUT}';")
    # Every table lock on an existing busy table is taken by a retry loop, before the statements that need it.
    retry = script.index("LOCK TABLE public.customers IN SHARE ROW EXCLUSIVE MODE;")
    assert script.index("DO $lock_retries$") < retry < script.index("CREATE TRIGGER billing_sync_customer_insert")
    assert "NOT VALID" in script and "VALIDATE CONSTRAINT billing_account_memberships_customer_id_fkey" in script


def test_each_revision_prints_on_its_own(capsys):
    code, script, _ = run_cli(capsys, None, "db", "sql", "0001:0002")
    assert code == 0
    assert "UPDATE alembic_version SET version_num='0002'" in script
    assert "CREATE TABLE alembic_version" not in script


def test_psql_builds_from_the_offline_sql_the_schema_the_migrations_build(conn, db_url, tmp_path):
    """The DBA's path: the printed script, run by psql with ON_ERROR_STOP on an empty database."""
    script = tmp_path / "upgrade.sql"
    script.write_text(migrate.offline_sql(f"base:{PRE_RELEASE}"), encoding="utf-8")
    major = server_major(conn)
    with fresh_database(conn, db_url) as url:
        result = psql(major, url, "-q", "-f", str(script))
        assert result.returncode == 0, result.stderr
        assert schema_dump(major, url) == schema_dump(major, db_url)  # db_url: the template the migrations built
        assert migrate.current(url) == PRE_RELEASE
        rows = psql(major, url, "-At", "-c", "SELECT name, enabled FROM billing_sync.feature_flags")
        assert rows.stdout.split() == [f"{FLAG}|f"]


@pytest.mark.parametrize("revision", ["0001", "0002"])
def test_a_database_upgraded_offline_part_of_the_way_upgrades_online_to_the_same_schema(
    conn, db_url, tmp_path, revision
):
    """A DBA ran the first revisions by hand; the deploy's `sync-admin db upgrade` does the rest."""
    script = tmp_path / "part.sql"
    script.write_text(migrate.offline_sql(f"base:{revision}"), encoding="utf-8")
    major = server_major(conn)
    with fresh_database(conn, db_url) as url:
        assert psql(major, url, "-q", "-f", str(script)).returncode == 0
        assert migrate.current(url) == revision
        migrate.upgrade(url, PRE_RELEASE)
        assert schema_dump(major, url) == schema_dump(major, db_url)


def test_a_range_that_goes_down_prints_the_downgrade_sql(capsys):
    code, out, err = run_cli(capsys, None, "db", "sql", "0005:0003")
    assert (code, err) == (0, "")
    assert "-- Running downgrade 0005 -> 0004" in out and "-- Running downgrade 0004 -> 0003" in out
    assert "REVOKE" in out and "Running upgrade" not in out


@pytest.mark.parametrize("given", ["0005:0005", "0005", "0005:", ":0003", "0042:head", "x:y"])
def test_an_empty_or_unknown_range_is_refused_in_one_line(capsys, given):
    code, out, err = run_cli(capsys, None, "db", "sql", given)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
