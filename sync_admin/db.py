"""Database URLs and connections: where to connect, how to say it without the password."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import conninfo

from sync_admin.errors import BadInput, DatabaseUnavailable

if TYPE_CHECKING:
    from sqlalchemy import Engine

DATABASE_URL_ENV = "DATABASE_URL"
APPLICATION_NAME = "sync-admin"
CONNECT_TIMEOUT_SECONDS = 10

_URL_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)
# A word that may carry credentials: no white space (a password may hold quotes, so they do not end a word).
_WORD = re.compile(r"\S+")
# What may open a word before a URL (messages quote what they were given), then the scheme of a PostgreSQL URL,
# however many slashes were typed after it (postgresql:/..., postgres:///...), or any other scheme with its //.
_OPENING = re.compile(r"(?:[\w.-]+=)?[\'\"(\[<]*")
_SCHEME = re.compile(r"postgres(?:ql)?(?:\+psycopg2?)?:/*|[a-z][a-z0-9+.-]*://", re.I)

# Passwords of the URLs sync-admin was given, hidden wherever they show up, whatever quotes them.
# Shorter ones are left to the patterns above: masking every "ab" of every message helps no one.
_known_passwords: set[str] = set()
_MIN_KNOWN_PASSWORD = 4


def _credentials(word: str) -> tuple[int, int] | None:
    """Where the password of WORD is (start, end), when WORD looks like user:password@host, with or without a
    scheme, slashes or anything else around it; None when it has none.

    This does not parse URLs (what must be masked is exactly what may not parse): the password runs from the
    first colon after the user name (after a PostgreSQL scheme, when there is one) to the word's last @.
    """
    at = word.rfind("@")
    if at < 0:
        return None
    start = _OPENING.match(word).end()  # type: ignore[union-attr]  # matches the empty string at least
    scheme = _SCHEME.match(word, start)
    start = scheme.end() if scheme else start
    colon = word.find(":", start, at)
    if colon < 0:
        return None
    return colon + 1, at


def _mask_word(match: re.Match[str]) -> str:
    word = match.group()
    found = _credentials(word)
    if found is None or found[0] == found[1]:
        return word
    return word[: found[0]] + "***" + word[found[1] :]


def mask(text: str, *passwords: str) -> str:
    """Hide every password: every password sync-admin has been given, wherever it appears (first: a password may
    hold spaces or & that end the patterns below), then anything shaped like user:password@host in TEXT (a URL,
    valid or not) and password= keywords."""
    known = {password for password in _known_passwords if len(password) >= _MIN_KNOWN_PASSWORD}
    for password in sorted(known.union(passwords) - {""}, key=len, reverse=True):
        text = text.replace(password, "***")
    text = _WORD.sub(_mask_word, text)
    return _KEYWORD_PASSWORD.sub(lambda m: m["head"] + "***", text)


def _raw_password(url: str) -> str:
    """The password of a URL as typed (up to its last @), before libpq has parsed it (it may not parse)."""
    found = _credentials(url.strip())
    return url.strip()[found[0] : found[1]] if found else ""


# password=... in a URL's query, as typed: up to the next & (a space too may be part of it, as typed).
_QUERY_PASSWORD = re.compile(r"[?&]password=(?P<secret>[^&]*)", re.I)


def _passwords_in(url: str) -> set[str]:
    """The passwords of a URL as typed (user:password@ and ?password=), and decoded."""
    raw = {_raw_password(url), *(m["secret"] for m in _QUERY_PASSWORD.finditer(url))}
    return ({*raw, *(unquote(value) for value in raw)}) - {""}


def remember_password(url: str) -> None:
    """From now on, mask() hides this URL's password wherever it appears."""
    _known_passwords.update(_passwords_in(url))
    try:
        password = conninfo.conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:
        return
    if password:
        _known_passwords.update({str(password), quote(str(password), safe="")})


def resolve_url(option: str | None) -> str | None:
    """The URL given by --database-url or DATABASE_URL, validated; None means "use the embedded server"."""
    url = option or os.environ.get(DATABASE_URL_ENV) or None
    if url is None:
        return None
    return libpq_url(url)


def libpq_url(url: str) -> str:
    """The URL in the form libpq takes (no SQLAlchemy driver suffix); BadInput when malformed."""
    stripped = url.strip()
    remember_password(stripped)
    if not stripped.lower().startswith(_URL_SCHEMES):
        raise BadInput(
            f"not a PostgreSQL URL: {mask(stripped)!r}; expected a URL like postgresql://user@host:5432/dbname"
        )
    plain = re.sub(r"^postgresql\+psycopg2?://", "postgresql://", stripped, flags=re.I)
    # Short passwords too: libpq's message about a malformed URL may quote the password alone.
    given = _passwords_in(plain)
    try:
        params = conninfo.conninfo_to_dict(plain)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"malformed database URL {mask(plain, *given)!r}: {mask(first_line(exc), *given)}") from None
    problem = _invalid_option(params)
    if problem and "port" in problem:
        # A port that is no number may be a password typed without @host (postgresql://alice:secret): the URL is
        # not echoed at all.
        raise BadInput(f"malformed database URL: {problem}")
    if "@" in _raw_password(plain):  # libpq would take what follows the first @ for the host
        problem = "it has more than one @; write an @ of the user name or password as %40"
    if problem:
        raise BadInput(f"malformed database URL {mask(plain, *given)!r}: {mask(problem, *given)}")
    return plain


_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def _invalid_option(params: dict[str, object]) -> str | None:
    """What libpq would only reject at connect time (and we would misreport as "unreachable")."""
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            return (
                "its port is not a number from 1 to 65535 (a password goes after the user name and a colon,"
                " before the @ and the host)"
            )
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        return f"sslmode {sslmode!r} is not one of {', '.join(sorted(_SSLMODES))}"
    return None


def sqlalchemy_engine(url: str, *, application_name: str = APPLICATION_NAME) -> Engine:
    """A SQLAlchemy engine whose connections psycopg opens from the libpq URL itself.

    SQLAlchemy's own URL parser knows fewer forms than libpq (several hosts, socket
    directories, percent-encoded options); handing psycopg the URL accepts every form the
    rest of sync-admin accepts.
    """
    from sqlalchemy import create_engine  # here: only the migrations need SQLAlchemy (start-up time)
    from sqlalchemy.pool import NullPool

    checked = libpq_url(url)

    def open_connection() -> psycopg.Connection:
        return psycopg.connect(checked, application_name=application_name, connect_timeout=CONNECT_TIMEOUT_SECONDS)

    return create_engine("postgresql+psycopg://", creator=open_connection, poolclass=NullPool)


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


# What libpq says when the server is up but the credentials are not accepted (or none were given).
_AUTHENTICATION_FAILED = ("password authentication failed", "no password supplied", "authentication failed")


def connect_hint(exc: BaseException | None) -> str:
    """What to check: the password (the server answered) or the address (it did not)."""
    if any(text in str(exc) for text in _AUTHENTICATION_FAILED):
        return "check the user and its password (~/.pgpass or PGPASSFILE, or the URL in the environment)"
    return "check the URL and that the server is up"


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
            f"cannot connect to {mask(url)}: {mask(first_line(exc))}; {connect_hint(exc)}"
        ) from None


def connect_service(url: str, application_name: str) -> psycopg.Connection:
    """An autocommit connection for a long-running service (watch, heal), with TCP keepalives: it is idle for
    long stretches, and a dead peer must be noticed (then reconnected) rather than waited on forever."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            application_name=application_name,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {mask(url)}: {mask(first_line(exc))}; {connect_hint(exc)}"
        ) from None


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on any error."""
    with connect(url) as conn:
        yield conn


# The group role that every rollout and monitoring command works for (revisions 0005 and 0009).
ADMIN_ROLE = "billing_sync_admin"


def permission_denied(exc: BaseException) -> str | None:
    """The line for a permission error (psycopg's, or SQLAlchemy's wrapping of it), naming the role that is
    needed; None for any other error."""
    original = getattr(exc, "orig", exc)  # SQLAlchemy (alembic) wraps the driver's error
    if not isinstance(original, psycopg.errors.InsufficientPrivilege):
        return None
    return (
        f"{first_line(original)}: this command needs a login role that is a member of {ADMIN_ROLE}"
        f" (GRANT {ADMIN_ROLE} TO <your role>, as the migration owner), or the migration owner itself"
    )
