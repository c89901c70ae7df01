"""`sync-admin demo` end to end: the real command in a subprocess, on its own embedded server.

The command starts the embedded server in a temporary data directory (SYNC_ADMIN_DATA_DIR)
and leaves it running, as it does for a person; the fixture stops it whatever happens.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

COMMAND_TIMEOUT_SECONDS = 300  # the first run initialises the server's data directory
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d(:\d\d)?")
IGNORED_URL = "postgresql://someone:s3cret-password@db.invalid:5432/production"

# What the story must show, each as one line of the output with its white space collapsed.
STORY = (
    # 2. flag off: customers are written, the billing tables stay empty
    "customers: 2, billing_accounts: 0, billing_account_memberships: 0",
    # 3. on for everyone: the everyone gate and the kill switch both on
    "3. Turn account_data_persistence on for everyone (was off, no gate), by demo",
    # 4. flag on: a shared account, white space trimmed, a move, a removal, a skipped value
    "carol@example.com insert 'A-100' -> A-100",
    "dave@example.com insert ' A-100 ' -> A-100 (white space trimmed: same account)",
    "erin@example.com update 'Z-200' -> 'Y-300' -> Y-300 (membership moved)",
    "frank@example.com update 'F-500' -> NULL -> no membership (membership removed)",
    "gina@example.com insert 'not an account!' -> no membership (skipped, no error)",
    # the accounts and memberships tables, side by side
    "A-100 2 carol@example.com A-100",
    "Z-200 0 dave@example.com A-100",
    "Y-300 1 erin@example.com Y-300",
    "F-500 0",
    # 5. kill switch: the write succeeds, the membership stays as it was
    "5. Kill switch: account_data_persistence off for every customer (was on; gates kept: everyone)",
    "carol@example.com update 'A-100' -> 'Y-300' -> A-100 (saved; sync stopped)",
    "customers.zuora_account_id is now 'Y-300'",
    "customers: 7, billing_accounts: 4, billing_account_memberships: 3 (unchanged)",
    # 6. the audit history (the first change may wrap: it names both columns it changed)
    "enabled: false -> true",
    "demo demo: start syncing",
    "enabled: true -> false demo demo: kill switch",
)


def sync_admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync_admin.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture
def demo_env(tmp_path) -> Iterator[dict[str, str]]:
    """An environment with its own embedded server and no DATABASE_URL; the server is stopped after."""
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env["SYNC_ADMIN_DATA_DIR"] = str(tmp_path / "pgdata")
    try:
        yield env
    finally:
        stopped = sync_admin(env, "server", "stop")
        assert stopped.returncode == 0, stopped.stderr
        status = sync_admin(env, "server", "status")
        assert "stopped" in status.stdout, status.stdout + status.stderr


def run_demo(env: dict[str, str]) -> list[str]:
    """The demo's output lines (white space collapsed), after checking that it succeeded cleanly."""
    result = sync_admin(env, "demo")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "error" not in result.stderr.lower(), result.stderr
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def assert_story(lines: list[str]) -> None:
    missing = [expected for expected in STORY if not any(expected in line for line in lines)]
    assert not missing, "missing from the demo output:\n" + "\n".join(missing) + "\n---\n" + "\n".join(lines)


def test_demo_tells_the_story_and_is_repeatable(demo_env: dict[str, str]) -> None:
    first = run_demo(demo_env)
    assert_story(first)
    assert not any("DATABASE_URL" in line for line in first)
    demo_url = next(line for line in first if line.startswith("psql ")).split('"')[1]
    assert "/sync_admin_demo" in demo_url and demo_env["SYNC_ADMIN_DATA_DIR"] in demo_url

    # Again, now with a DATABASE_URL that must be ignored (and its password never printed):
    # the same story on a fresh database, not the first run's rows plus more.
    second = run_demo({**demo_env, "DATABASE_URL": IGNORED_URL})
    assert second[0].startswith("--database-url/DATABASE_URL is ignored"), second[0]
    assert not any("s3cret" in line or "db.invalid" in line for line in second)
    assert_story(second)
    assert [TIMESTAMP.sub("T", line) for line in second[1:]] == [TIMESTAMP.sub("T", line) for line in first]


def test_demo_leaves_the_default_database_alone(demo_env: dict[str, str]) -> None:
    run_demo(demo_env)
    url = sync_admin(demo_env, "server", "url").stdout.strip()
    assert url.endswith("/billing_sync") or "/billing_sync?" in url, url
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    assert tables == (0,)
