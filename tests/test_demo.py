"""`sync-admin demo` end to end: the real command in a subprocess, on its own embedded server.

The command starts the embedded server in a temporary data directory (SYNC_ADMIN_DATA_DIR)
and leaves it running, as it does for a person; the fixture stops it whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

COMMAND_TIMEOUT_SECONDS = 300  # the first run initialises the server's data directory
# Every way the demo prints a time: with seconds and an offset (+00, +00:00, +0000), or to the minute with an offset
# or a zone name (UTC); two runs a minute apart must compare equal.
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d(\.\d+)?)?(\s?[+-]\d\d(:?\d\d)?| [A-Z]{3,4}\b)?")
IGNORED_URL = "postgresql://someone:s3cret-password@db.invalid:5432/production"

# What the story must show, each as one line of the output with its white space collapsed.
STORY = (
    # 2. before the rollout: customers are written, the billing tables stay empty
    "account_data_persistence: OFF: no gate set",
    "customers: 12, billing_accounts: 0, billing_account_memberships: 0",
    # 3. testing customers, 4. a percentage, 5. everyone: the state line, the backfill and verify at each step
    "3. Testing customers: flag enable --actor 1 --actor 2",
    "account_data_persistence: ON for 2 customers (2 actors)",
    "backfill: 2 customers in the rollout, 2 memberships added, 1 account created",
    "account_data_persistence: ON for 5 customers (50 %, 2 actors)",
    "account_data_persistence: ON for everyone (12 customers)",
    "verify: no drift: the billing tables are exactly the derived state for every customer in the rollout",
    "#### QA report: `account_data_persistence` sync",
    # 6. the portal writes: a shared account, white space trimmed, a move, a removal, a skipped value
    "carol@example.com insert 'A-100' -> A-100",
    "dave@example.com insert ' A-100 ' -> A-100 (white space trimmed: same account)",
    "carol@example.com update 'A-100' -> 'Y-300' -> Y-300 (membership moved)",
    "dave@example.com update ' A-100 ' -> NULL -> no membership (membership removed)",
    "gina@example.com insert 'not an account!' -> no membership (skipped, no error)",
    # one table, its title above it: nothing to misread as rows joined with another table
    "billing_accounts",
    "A-100 2",
    # 7. the incident: the kill switch, a write saved but not synced, a gate added while pulled, resume
    "account_data_persistence: OFF: kill switch pulled by demo at T (INC-1: billing errors);"
    " gates kept: everyone + 2 actors + 50 %",
    "carol@example.com update 'Y-300' -> 'Z-900' -> Y-300 (saved; not synced during the incident)",
    "gates kept: everyone + 3 actors + 50 %",
    "account_data_persistence: ON for everyone (15 customers)",
    "carol@example.com -> Z-900",
    # 8. the rollout check: not yet (a day on for everyone), and gina's value
    "PASS zero drift: no drift across 15 customers in the rollout",
    "FAIL on for everyone for at least 24 h without a kill-switch event: only 0.0 h",
    "not ready to release the flag: 2 of 4 checks failed",
    # 9. the release: refused first (what is missing), then done; after it the sync is always on
    "9. Release: db upgrade (revision 0013 retires the flag)",
    "refused, the database stays at 0012; what the guard says is missing:",
    "- customers whose zuora_account_id is not an account: 1",
    "at revision 0013",
    "account_data_persistence: RELEASED: always on, for everyone (15 customers); released",
    "hank@example.com insert 'H-800' -> H-800 (synced, no flag read)",
    "flag disable: account_data_persistence was released",
    # 10. the audit history, the release last
    "enabled: true -> false demo INC-1: billing errors",
    "enabled: false -> true demo INC-1 resolved",
    "released (revision 0013): the flag retired",
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
def demo_env() -> Iterator[dict[str, str]]:
    """An environment with its own embedded server and no DATABASE_URL; the server is stopped after.

    Its data directory is made with mkdtemp, as conftest's server's is, not in pytest's tmp_path: as root, the
    server runs as another user, who must reach the directory, and every pytest-xdist worker that starts makes
    pytest's base directory private again (0700)."""
    directory = Path(tempfile.mkdtemp(prefix="sync-admin-demo-"))
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env["SYNC_ADMIN_DATA_DIR"] = str(directory / "pgdata")
    try:
        yield env
    finally:
        try:
            stopped = sync_admin(env, "server", "stop")
            assert stopped.returncode == 0, stopped.stderr
            status = sync_admin(env, "server", "status")
            assert "stopped" in status.stdout, status.stdout + status.stderr
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def run_demo(env: dict[str, str]) -> list[str]:
    """The demo's output lines (white space collapsed), after checking that it succeeded cleanly."""
    result = sync_admin(env, "demo")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "error" not in result.stderr.lower(), result.stderr
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def assert_story(lines: list[str]) -> None:
    stamped = [TIMESTAMP.sub("T", line) for line in lines]
    missing = [expected for expected in STORY if not any(expected in line for line in stamped)]
    assert not missing, "missing from the demo output:\n" + "\n".join(missing) + "\n---\n" + "\n".join(lines)


@pytest.mark.slow(9)
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
