"""Named environments (staging, production, ...): where each one's database is, from TOML files.

Two files, the project's entry for an environment winning over the user's:

* the project file, `./sync-admin.toml` (the current directory: checked in next to the deploy scripts);
* the user file, `$XDG_CONFIG_HOME/sync-admin/config.toml` (default `~/.config/sync-admin/config.toml`).

`SYNC_ADMIN_CONFIG=/path` names one file instead of both. An environment says where its database is in exactly
one of three ways, none of which puts a password in the file (passwords belong in ~/.pgpass or the environment):

    [environments.staging]
    url_env = "STAGING_DATABASE_URL"      # the URL is in this environment variable

    [environments.production]
    service = "billing_production"        # a libpq service of pg_service.conf

    [environments.dev]
    url = "postgresql://alice@localhost/billing"   # refused if it carries a password

    [rollout]
    order = ["staging", "production"]     # default: the order of the [environments.*] tables

An environment may also carry a table of settings that another module reads and checks itself, when it is used:
`[environments.production.unleash]` (sync_admin/unleash_config.py, the Unleash bridge).

Everything wrong in a file is one line (BadInput, exit 2) naming the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg import conninfo

from sync_admin import db
from sync_admin.errors import BadInput, SyncAdminError

CONFIG_ENV = "SYNC_ADMIN_CONFIG"
PROJECT_FILE = "sync-admin.toml"
USER_FILE = Path("sync-admin") / "config.toml"
# The one database when no environment is configured (or --database-url names it): what status and report call it.
DEFAULT = "default"

SOURCES = ("url_env", "service", "url")
# Tables of an environment that belong to another module, which validates them when it is used (unleash_config).
SECTIONS = ("unleash",)
# Names show up in tables, issue checklists and shell commands: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_TOP_LEVEL = {"environments", "rollout"}
_ROLLOUT_KEYS = {"order"}


@dataclass(frozen=True)
class Environment:
    """One named database. `kind` is url_env, service, url, or given (--database-url, DATABASE_URL, embedded)."""

    name: str
    kind: str
    value: str  # the variable's name, the service's name, or the URL itself
    file: Path | None  # where it is defined (None: given on the command line or by default)
    # The environment's tables of SECTIONS, as read (validated by the module that uses them).
    sections: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """Where it is defined, for messages: `sync-admin.toml: environments.staging.url_env`."""
        return f"{self.file}: environments.{self.name}.{self.kind}" if self.file else self.name

    def url(self) -> str:
        """The libpq URL to connect with; BadInput when its variable is unset or holds no valid URL."""
        if self.kind == "service":
            # libpq reads the service's parameters from pg_service.conf (PGSERVICEFILE, ~/.pg_service.conf) and its
            # password from ~/.pgpass; as a URL it goes everywhere a URL goes (migrations included).
            return "postgresql://?service=" + quote(self.value, safe="")
        if self.kind != "url_env":
            return self.value
        found = os.environ.get(self.value, "").strip()
        if not found:
            raise BadInput(f"{self.key}: the variable {self.value} is not set; export it or pick another --env")
        try:
            return db.libpq_url(found)
        except BadInput as exc:
            raise BadInput(f"{self.key}: ${self.value}: {exc}") from None

    def describe(self) -> str:
        """Where its URL comes from, masked: what an operator checks before pointing a command at it."""
        if self.kind == "service":
            return f"service {self.value} (pg_service.conf)"
        if self.kind != "url_env":
            return db.mask(self.value)
        try:
            return f"${self.value} = {db.mask(self.url())}"
        except SyncAdminError:
            value = os.environ.get(self.value, "").strip()
            return f"${self.value} ({'not set' if not value else 'not a valid URL'})"


def given(url: str) -> Environment:
    """The one database of a command without configuration (or with --database-url): called "default"."""
    return Environment(DEFAULT, "given", url, None)


@dataclass(frozen=True)
class Config:
    environments: tuple[Environment, ...]  # in the order of the files' tables, the project's first
    rollout: tuple[str, ...]  # the rollout order: names of environments
    files: tuple[Path, ...]  # the files read (those that exist)
    searched: tuple[Path, ...]  # the files looked for

    def get(self, name: str) -> Environment:
        for environment in self.environments:
            if environment.name == name:
                return environment
        if not self.environments:
            where = " or ".join(map(str, self.searched))
            raise BadInput(
                f"unknown environment {name!r} (--env): no environment is configured ({where}; {CONFIG_ENV} names"
                " another file)"
            )
        known = ", ".join(environment.name for environment in self.environments)
        raise BadInput(f"unknown environment {name!r} (--env): {', '.join(map(str, self.files))} configure {known}")

    @property
    def ordered(self) -> tuple[Environment, ...]:
        """The rollout's environments in its order, then any others (in the files' order)."""
        first = tuple(self.get(name) for name in self.rollout)
        return first + tuple(environment for environment in self.environments if environment not in first)

    def before(self, name: str) -> tuple[Environment, ...]:
        """The environments the rollout reaches before NAME (none when NAME is first or not in the order)."""
        if name not in self.rollout:
            return ()
        return tuple(self.get(earlier) for earlier in self.rollout[: self.rollout.index(name)])


def config_files(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> tuple[Path, ...]:
    """The files to read, the project's first: SYNC_ADMIN_CONFIG alone, else the project and the user file."""
    environ = os.environ if environ is None else environ
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        return (Path(named),)
    config_home = environ.get("XDG_CONFIG_HOME", "").strip()
    # The XDG base directory spec: a relative XDG_CONFIG_HOME is invalid and ignored.
    home = Path(config_home) if config_home and Path(config_home).is_absolute() else Path("~/.config").expanduser()
    return ((cwd or Path.cwd()) / PROJECT_FILE, home / USER_FILE)


def load(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
    """The configuration of every file that exists (the one SYNC_ADMIN_CONFIG names must exist)."""
    environ = os.environ if environ is None else environ
    searched = config_files(environ, cwd)
    named = bool(environ.get(CONFIG_ENV, "").strip())
    parsed = [(path, _read(path)) for path in searched if named or path.is_file()]
    environments: dict[str, Environment] = {}
    rollout: tuple[tuple[str, ...], Path] | None = None
    for path, data in parsed:  # the project file first: its entries win
        for environment in _environments(path, data):
            environments.setdefault(environment.name, environment)
        order = _order(path, data)
        if rollout is None and order is not None:
            rollout = (order, path)
    if rollout is None:
        names = tuple(environments)
    else:
        names, path = rollout
        unknown = [name for name in names if name not in environments]
        if unknown:
            raise BadInput(f"{path}: rollout.order names {', '.join(map(repr, unknown))}, which no file defines")
    return Config(tuple(environments.values()), names, tuple(path for path, _ in parsed), searched)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file ({CONFIG_ENV} names it)") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:  # TOMLDecodeError, and UnicodeDecodeError for a file that is not UTF-8
        raise BadInput(f"{path}: not valid TOML: {db.first_line(exc)}") from None


def _environments(path: Path, data: dict[str, Any]) -> list[Environment]:
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise BadInput(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_LEVEL))})")
    tables = data.get("environments", {})
    if not isinstance(tables, dict):
        raise BadInput(f"{path}: environments must be tables ([environments.staging])")
    return [_environment(path, name, table) for name, table in tables.items()]


def _environment(path: Path, name: str, table: Any) -> Environment:
    key = f"{path}: environments.{name}"
    if not _NAME.fullmatch(name):
        raise BadInput(f"{path}: environment name {name!r}: letters, digits, _ and - only (up to 63)")
    if not isinstance(table, dict):
        raise BadInput(f"{key}: must be a table with one of {', '.join(SOURCES)}")
    unknown = sorted(set(table) - set(SOURCES) - set(SECTIONS))
    if unknown:
        raise BadInput(
            f"{key}.{unknown[0]}: unknown key (known: {', '.join(SOURCES)}),"
            f" and no table (known: {', '.join(SECTIONS)})"
        )
    given_sources = [source for source in SOURCES if source in table]
    if len(given_sources) != 1:
        raise BadInput(f"{key}: give exactly one of {', '.join(SOURCES)} (found {len(given_sources)})")
    [kind] = given_sources
    value = table[kind]
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{key}.{kind}: must be a non-empty string")
    value = value.strip()
    if kind == "url":
        value = _url_without_password(f"{key}.url", value)
    return Environment(name, kind, value, path, {section: table[section] for section in SECTIONS if section in table})


def _url_without_password(key: str, url: str) -> str:
    """The URL validated; refused when it carries a password (the file is read by many, copied, committed)."""
    try:
        checked = db.libpq_url(url)  # also makes db.mask hide its password from here on
    except BadInput as exc:
        raise BadInput(f"{key}: {exc}") from None
    if conninfo.conninfo_to_dict(checked).get("password"):
        raise BadInput(
            f"{key}: {db.mask(checked)} carries a password; a config file is no place for one: put it in"
            " ~/.pgpass (or PGPASSFILE), or the whole URL in a variable named by url_env"
        )
    return checked


def _order(path: Path, data: dict[str, Any]) -> tuple[str, ...] | None:
    rollout = data.get("rollout")
    if rollout is None:
        return None
    if not isinstance(rollout, dict):
        raise BadInput(f"{path}: rollout must be a table ([rollout] order = [...])")
    unknown = sorted(set(rollout) - _ROLLOUT_KEYS)
    if unknown:
        raise BadInput(f"{path}: rollout.{unknown[0]}: unknown key (known: order)")
    order = rollout.get("order")
    if order is None:
        return None
    if not isinstance(order, list) or not all(isinstance(name, str) for name in order):
        raise BadInput(f'{path}: rollout.order must be a list of environment names (["staging", "production"])')
    if len(set(order)) != len(order):
        raise BadInput(f"{path}: rollout.order names an environment twice")
    return tuple(order)


def listing(config: Config) -> list[str]:
    """`sync-admin rollout envs`: one line each, the rollout's first and in its order, where its database is
    (masked) and which file says so; or where none was found."""
    if not config.environments:
        where = " or ".join(map(str, config.searched))
        return [
            f"no environment configured ({where}; {CONFIG_ENV} names another file): commands use --database-url,"
            " DATABASE_URL or the embedded server"
        ]
    lines = []
    for environment in config.ordered:
        if environment.name in config.rollout:
            where = f"rollout step {config.rollout.index(environment.name) + 1}; {environment.file}"
        else:
            where = f"not in the rollout order; {environment.file}"
        lines.append(f"{environment.name}: {environment.describe()} ({where})")
    return lines


# --- which environments a rollout command covers ----------------------------------------------------


def covered(name: str | None, url_given: bool, url: Callable[[], str]) -> tuple[Environment, ...]:
    """--env's environment; --database-url's database as "default"; else every configured environment (the
    rollout's first, in its order); else the one database of DATABASE_URL or the embedded server, as "default".

    URL resolves the default database only when it is needed (it may start the embedded server).
    """
    if name is not None:
        return (load().get(name),)
    if not url_given:
        config = load()
        if config.environments:
            return config.ordered
    return (given(url()),)


def plan(name: str | None, url_given: bool, url: Callable[[], str]) -> tuple[tuple[Environment, ...], Environment]:
    """(the environments the rollout reaches first, the target): --env's environment, else the last of the rollout
    order; the default database alone when nothing is configured or --database-url names it."""
    if url_given:
        return (), given(url())
    config = load()
    if name is None:
        if not config.rollout:
            return (), given(url())
        name = config.rollout[-1]
    return config.before(name), config.get(name)
