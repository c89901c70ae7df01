"""Database URLs and connections: where to connect, how to say it without the password."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import conninfo

from sync_admin.errors import BadInput, DatabaseUnavailable

DATABASE_URL_ENV = "DATABASE_URL"
APPLICATION_NAME = "sync-admin"
CONNECT_TIMEOUT_SECONDS = 10

_URL_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^@\s]*)(?=@)", re.I)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)


def mask(text: str) -> str:
    """Hide every password in a URL or conninfo string (and in messages that quote one)."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + ("***" if m["secret"] else ""), text)
    return _KEYWORD_PASSWORD.sub(lambda m: m["head"] + "***", text)


def resolve_url(option: str | None) -> str | None:
    """The URL given by --database-url or DATABASE_URL, validated; None means "use the embedded server"."""
    url = option or os.environ.get(DATABASE_URL_ENV) or None
    if url is None:
        return None
    return libpq_url(url)


def libpq_url(url: str) -> str:
    """The URL in the form libpq takes (no SQLAlchemy driver suffix); BadInput when malformed."""
    stripped = url.strip()
    if not stripped.lower().startswith(_URL_SCHEMES):
        raise BadInput(
            f"not a PostgreSQL URL: {mask(stripped)!r}; expected a URL like postgresql://user@host:5432/dbname"
        )
    plain = re.sub(r"^postgresql\+psycopg2?://", "postgresql://", stripped, flags=re.I)
    try:
        conninfo.conninfo_to_dict(plain)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"malformed database URL {mask(plain)!r}: {mask(first_line(exc))}") from None
    return plain


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy's psycopg 3 dialect."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", libpq_url(url), flags=re.I)


def make_url(*, host: str, port: int | str, user: str, dbname: str, password: str | None = None) -> str:
    """A libpq URL from its parts; a host starting with / is a Unix socket directory."""
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{quote(dbname)}?host={quote(host)}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{quote(dbname)}"


def database_name(url: str) -> str:
    return conninfo.conninfo_to_dict(libpq_url(url)).get("dbname") or "postgres"


def with_database(url: str, dbname: str) -> str:
    """The URL of another database on the same server."""
    return urlsplit(libpq_url(url))._replace(path="/" + quote(dbname)).geturl()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection tagged with application_name (it shows in the audit log); exit 3 when unreachable."""
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            application_name=APPLICATION_NAME,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {mask(url)}: {mask(first_line(exc))}; check the URL and that the server is up"
        ) from None


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on any error."""
    with connect(url) as conn:
        yield conn


def require_migrated(conn: psycopg.Connection) -> None:
    """Exit 3 with the fix when the billing_sync schema is not installed."""
    installed = conn.execute("SELECT to_regclass('billing_sync.feature_flags') IS NOT NULL").fetchone()
    if not (installed and installed[0]):
        raise DatabaseUnavailable("the database is not migrated; run `sync-admin db upgrade` first")
