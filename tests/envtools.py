"""Helpers for the tests of named environments: configuration files, and databases that play staging and
production on the suite's one server (clones of the migrated template)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from sync_admin import db


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def isolate(tmp_path: Path, monkeypatch) -> Path:
    """No configuration but the test's own: the project directory (the current one) and XDG_CONFIG_HOME are in
    tmp_path, SYNC_ADMIN_CONFIG and DATABASE_URL unset. Returns the project directory."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SYNC_ADMIN_CONFIG", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return project


def user_file(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "sync-admin" / "config.toml"


@contextmanager
def database_factory(conn: psycopg.Connection, db_url: str, template: str) -> Iterator[Callable[[str], str]]:
    """make(label) -> the URL of a new database cloned from the migrated template; all dropped at the end."""
    created: list[str] = []

    def make(label: str) -> str:
        name = f"env_{label}_{uuid.uuid4().hex[:8]}"
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        created.append(name)
        return db.with_database(db_url, name)

    try:
        yield make
    finally:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def password_to_pgpass(url: str, monkeypatch, directory: Path) -> str:
    """URL without its password, the password (if it has one: the suite's server in CI asks for one) in a .pgpass
    that PGPASSFILE names, as an operator keeps passwords out of the configuration. Returns the URL to write."""
    params = conninfo.conninfo_to_dict(db.libpq_url(url))
    password = params.pop("password", None)
    if password:
        path = directory / "pgpass"
        fields = [str(params.get("host") or "localhost"), str(params.get("port") or 5432), "*", str(params["user"])]
        escaped = [value.replace("\\", "\\\\").replace(":", "\\:") for value in [*fields, str(password)]]
        with path.open("a") as file:
            file.write(":".join(escaped) + "\n")
        path.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(path))
    return db.make_url(
        host=str(params.get("host") or "localhost"),
        port=int(params.get("port") or 5432),
        user=str(params["user"]),
        dbname=str(params["dbname"]),
    )


def service_file(path: Path, services: dict[str, str]) -> Path:
    """A pg_service.conf with one section per service, each the parameters of a URL (without its password)."""
    sections = []
    for service, url in services.items():
        params = conninfo.conninfo_to_dict(url)
        lines = [f"{key}={params[key]}" for key in ("host", "port", "user", "dbname") if params.get(key)]
        sections.append(f"[{service}]\n" + "\n".join(lines) + "\n")
    return write(path, "\n".join(sections))


def days_pass(url: str, hours: float) -> None:
    """Move every audit event of that database HOURS into the past (as its owner, the suite's superuser: no role
    but the owner of billing_sync.feature_flag_events may change it, which is what this fakes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE billing_sync.feature_flag_events SET occurred_at = occurred_at - make_interval(secs => %s)",
            (hours * 3600,),
        )
