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
* The foreign key from billing_account_memberships to customers goes: under snapshot isolation its cascade
  failed a customer DELETE whose memberships a repair had written after the snapshot. Two row triggers
  (billing_sync.sync_customer_removed) do what ON DELETE / ON UPDATE CASCADE did, or queue the customer.
* A partitioned customers table is refused, before anything changes.

The insert and update triggers of 0006 stay: they call the same function names, replaced with CREATE OR REPLACE
FUNCTION, which locks no table. The two new triggers and the dropped foreign key lock customers and the
memberships (ACCESS EXCLUSIVE, last, under lock retries, a few milliseconds until this revision commits).
Downgrading restores the 0006 functions, the foreign key (orphaned memberships deleted first, then validated)
and drops the queue (what is queued then waits for the backfill).
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.definitions import stamp_function_sql, stamp_trigger_sql
from sync_admin.migration_ops import execute, lock_retries, run_sql_file

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
    ("functions/sync_customer_removed_v1.sql", "billing_sync.sync_customer_removed()"),
    ("functions/sync_customers_truncated_v1.sql", "billing_sync.sync_customers_truncated()"),
)
NEW_TRIGGERS = (
    ("triggers/customers_billing_sync_delete_v1.sql", "billing_sync_customer_delete"),
    ("triggers/customers_billing_sync_rekey_v1.sql", "billing_sync_customer_rekey"),
    ("triggers/customers_billing_sync_truncate_v1.sql", "billing_sync_customer_truncate"),
)
MEMBERSHIPS_FKEY = "billing_account_memberships_customer_id_fkey"
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
    # Last: the triggers that replace the cascade, and the foreign key's drop, in one step, so that no customer
    # delete falls between them (ACCESS EXCLUSIVE on both tables for the milliseconds until this commits).
    with lock_retries("public.customers", "public.billing_account_memberships", mode="ACCESS EXCLUSIVE"):
        for path, name in NEW_TRIGGERS:
            run_sql_file(path)
            execute(stamp_trigger_sql("public.customers", name))
        # squawk warns that a dropped constraint may remove a guarantee: the two triggers above keep it (a
        # membership follows its customer's delete and id change), and tests/test_concurrency.py checks them.
        execute(
            "-- squawk-ignore ban-drop-constraint\n"
            f"ALTER TABLE public.billing_account_memberships DROP CONSTRAINT {MEMBERSHIPS_FKEY}"
        )


ORPHANS = (
    "DELETE FROM public.billing_account_memberships m"
    " WHERE {}NOT EXISTS (SELECT 1 FROM public.customers c WHERE c.id = m.customer_id)"
)


def downgrade() -> None:
    # The cascade's job for what a delete under snapshot isolation left to the repair: first over the whole
    # table, without the lock (it blocks no customer write); under the lock only the ids still queued, which
    # are the only ones that can have become orphans meanwhile.
    op.execute(ORPHANS.format(""))
    with lock_retries("public.customers", "public.billing_account_memberships", mode="ACCESS EXCLUSIVE"):
        for _path, name in NEW_TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON public.customers")
        op.execute(ORPHANS.format("m.customer_id IN (SELECT q.customer_id FROM billing_sync.sync_repairs q) AND "))
        run_sql_file("constraints/billing_account_memberships_customer_id_fkey_v1.sql")  # NOT VALID
    # account_lock_key first: create_billing_account v1 and the v1 sync functions call it.
    for path, signature in reversed(DROPPED_FUNCTIONS):
        install(path, signature)
    for _new, old, signature in REPLACED_FUNCTIONS:
        install(old, signature)
    for _path, signature in reversed(NEW_FUNCTIONS):
        execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {signature}")
    op.execute("DROP TABLE billing_sync.sync_repairs")
    # Validated outside the revision's transaction, as 0002 validated it: its locks (SHARE UPDATE EXCLUSIVE on
    # the memberships, ROW SHARE on customers) block no writer while it scans.
    with op.get_context().autocommit_block():
        op.execute(f"ALTER TABLE public.billing_account_memberships VALIDATE CONSTRAINT {MEMBERSHIPS_FKEY}")
