"""The sync under real concurrency (issue 11): it never waits for another transaction, follows the row as it
ends up, defers under snapshot isolation, and leaves nothing that is not repaired without a person.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

* New accounts are created only under claims that are tried, never waited for (claim_account for one
  account, claim_accounts for many: a lock hierarchy of 256 shared/exclusive regions over per-account keys).
  create_billing_account, which waited when it held no account lock, and its 64-bucket account_lock_key go.
* The trigger functions read the customer row as it is when they run (another AFTER trigger may have
  rewritten or deleted it), and under REPEATABLE READ / SERIALIZABLE queue the customer instead of writing.
* What the sync has to leave is queued in billing_sync.sync_repairs, in the customer write's transaction;
  billing_sync.sync_customers is the repair (`sync-admin heal`, the backfill), which never waits either.
* The backfill (backfill_batch v2) leaves what a live transaction holds instead of waiting for it, and ends
  with a sweep of the current cohort (drifted_customers) and the queue: a run finishes only when both are clean.
* A partitioned customers table is refused, before anything changes.

No trigger is created or dropped: the customers triggers of 0006 call the same function names, replaced with
CREATE OR REPLACE FUNCTION, which locks no table. A customer write running while this commits uses either the
old functions or the new ones, never a mix within one call.
Downgrading restores the 0006 functions and drops the queue (what is queued then waits for the backfill).
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.definitions import stamp_function_sql
from sync_admin.migration_ops import execute, run_sql_file

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (file, signature): created here, revoked from PUBLIC (called only by the sync's own functions), stamped.
NEW_FUNCTIONS = (
    ("functions/claim_account_v1.sql", "billing_sync.claim_account(text)"),
    ("functions/claim_accounts_v1.sql", "billing_sync.claim_accounts(text[])"),
    ("functions/resolve_account_v1.sql", "billing_sync.resolve_account(text)"),
    ("functions/sync_customers_v1.sql", "billing_sync.sync_customers(bigint[])"),
    ("functions/drifted_customers_v1.sql", "billing_sync.drifted_customers(integer)"),
    ("functions/repair_queued_v1.sql", "billing_sync.repair_queued(integer,bigint)"),
)
REPLACED_FUNCTIONS = (
    ("functions/backfill_batch_v2.sql", "functions/backfill_batch_v1.sql",
     "billing_sync.backfill_batch(bigint,integer)"),
    ("functions/sync_customers_inserted_v2.sql", "functions/sync_customers_inserted_v1.sql",
     "billing_sync.sync_customers_inserted()"),
    ("functions/sync_customer_updated_v2.sql", "functions/sync_customer_updated_v1.sql",
     "billing_sync.sync_customer_updated()"),
)  # fmt: skip
DROPPED_FUNCTIONS = (
    ("functions/create_billing_account_v1.sql", "billing_sync.create_billing_account(text)"),
    ("functions/account_lock_key_v1.sql", "billing_sync.account_lock_key(text)"),
)


def install(path: str, signature: str) -> None:
    run_sql_file(path)
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    execute(stamp_function_sql(signature))


def upgrade() -> None:
    # Before anything changes: a partitioned customers table adopted under 0001-0006 is refused here.
    run_sql_file("checks/customers_not_partitioned_v1.sql")
    run_sql_file("tables/sync_repairs_v1.sql")
    run_sql_file("indexes/sync_repairs_customer_id_idx_v1.sql")
    for path, signature in NEW_FUNCTIONS:
        install(path, signature)
    for new, _old, signature in REPLACED_FUNCTIONS:
        install(new, signature)
    for _path, signature in DROPPED_FUNCTIONS:
        # squawk warns that a dropped function may break its callers: these were revoked from PUBLIC and called
        # only by the sync functions replaced above.
        execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {signature}")


def downgrade() -> None:
    # account_lock_key first: create_billing_account v1 and the v1 sync functions call it.
    for path, signature in reversed(DROPPED_FUNCTIONS):
        install(path, signature)
    for _new, old, signature in REPLACED_FUNCTIONS:
        install(old, signature)
    for _path, signature in reversed(NEW_FUNCTIONS):
        execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {signature}")
    op.execute("DROP TABLE billing_sync.sync_repairs")
