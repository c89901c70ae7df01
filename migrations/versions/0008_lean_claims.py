"""The sync's claims within a transaction's share of the lock table, a cheaper multi-row insert sync, and a
drift report whose memory stays flat (issue 11, after measuring revision 0007).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

* claim_account v2 and claim_accounts v2: the claim regions and a transaction's budget of single claims are a
  quarter of max_locks_per_transaction each (billing_sync.claim_regions, 16 and 16 at the default of 64; 0007
  had 256 and 256), so the sync holds at most half of its transaction's share of the shared lock table and can
  never be the one that fills it ("out of shared memory" would fail the customer write). The regions get a new
  lock class (7300004): a transaction that took 0007's regions while this revision commits shares no key with
  those that take the new ones, so for that moment a bulk claim of 0007 and a single claim of 0008 of the same
  account may both insert it, and the later one waits for the earlier one's commit (as any write may), never
  for long: deploy while no import creating accounts is open.
* sync_customers_inserted v3: one pass over the rows of a multi-row INSERT instead of three lookups of every
  row's account (a 200,000-row INSERT ... SELECT: 8.1 s with v2, about the same writes by hand with v3), and
  the single-row path in two statements instead of three.
* normalize_zuora_account_id v2: the same rule without the bounded repetition {1,64}, which PostgreSQL's regex
  engine ran at about 4 us a value (under 1 us now); it runs once a synced row and over every customer in verify.
* account_drift v2: the sorted comparison (SET enable_hashagg = off): v1's hashed EXCEPT ALL never spilled, and
  the server process of `verify` grew with the table (2.9 GiB at 10M customers).

Every change is CREATE OR REPLACE FUNCTION (same signatures): no table is locked. Downgrading puts back 0007's.
"""

from collections.abc import Sequence

from sync_admin.definitions import stamp_function_sql
from sync_admin.migration_ops import execute, run_sql_file

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (file, signature): created here, revoked from PUBLIC (called only by the sync's own functions), stamped.
NEW_FUNCTIONS = (
    ("functions/claim_regions_v1.sql", "billing_sync.claim_regions()"),
    ("functions/claim_region_v1.sql", "billing_sync.claim_region(text)"),
)
# (new file, old file, signature)
REPLACED_FUNCTIONS = (
    ("functions/claim_account_v2.sql", "functions/claim_account_v1.sql", "billing_sync.claim_account(text)"),
    ("functions/claim_accounts_v2.sql", "functions/claim_accounts_v1.sql", "billing_sync.claim_accounts(text[])"),
    ("functions/sync_customers_inserted_v3.sql", "functions/sync_customers_inserted_v2.sql",
     "billing_sync.sync_customers_inserted()"),
    ("functions/account_drift_v2.sql", "functions/account_drift_v1.sql", "billing_sync.account_drift(integer)"),
    ("functions/normalize_zuora_account_id_v2.sql", "functions/normalize_zuora_account_id_v1.sql",
     "billing_sync.normalize_zuora_account_id(text)"),
)  # fmt: skip


def install(path: str, signature: str) -> None:
    run_sql_file(path)
    execute(stamp_function_sql(signature))


def upgrade() -> None:
    for path, signature in NEW_FUNCTIONS:
        install(path, signature)
        execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    for new, _old, signature in REPLACED_FUNCTIONS:
        install(new, signature)


def downgrade() -> None:
    for _new, old, signature in REPLACED_FUNCTIONS:
        install(old, signature)
    for _path, signature in reversed(NEW_FUNCTIONS):
        execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {signature}")
