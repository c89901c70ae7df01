"""A sync that costs (almost) nothing it does not have to: the kill switch mirrored into a schema's existence,
inserts synced once per statement, updates in three statements a row (issue 7).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

What changes, measured by `python -m bench` (docs/benchmarks.md, "Design decisions": the designs tried):

* The kill switch of account_data_persistence is mirrored into the existence of the empty schema
  billing_sync_enabled, kept by a statement trigger on billing_sync.feature_flags in the transaction of the
  change. The customers triggers' WHEN asks pg_catalog.to_regnamespace whether it exists: a write while the
  flag is off runs none of our code. Switching off stays exact at the next statement; switching on reaches a
  session at its next transaction (billing_sync.sync_switch says why).
* Inserts are synced once per statement from the transition table (billing_sync.sync_customers_inserted):
  one row with a value by the per-row statements, more by one set-based pass.
* Updates stay row by row behind UPDATE OF zuora_account_id (billing_sync.sync_customer_updated), with three
  statements instead of five.
* The skips statement trigger and notify_sync_skips go: the two functions send the same one notification per
  statement themselves. sync_customer_account (v3) goes with them.

Semantics are v3's: the same memberships, accounts, skip events and notifications.
Downgrading restores v3 and its three triggers, and drops the mirror.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.definitions import stamp_function_sql, stamp_trigger_sql
from sync_admin.migration_ops import execute, lock_retries, run_sql_file

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_FUNCTIONS = ("billing_sync.sync_switch()", "billing_sync.sync_customers_inserted()",
                 "billing_sync.sync_customer_updated()")  # fmt: skip

OLD_FUNCTIONS = ("billing_sync.sync_customer_account()", "billing_sync.notify_sync_skips()")

OLD_TRIGGERS = ("billing_sync_customer_insert", "billing_sync_customer_update", "billing_sync_customer_skips")


def install_functions(paths: Sequence[str], signatures: Sequence[str]) -> None:
    for path in paths:
        run_sql_file(path)
    # Functions are created EXECUTE-able by PUBLIC; these are for triggers only.
    for signature in signatures:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        execute(stamp_function_sql(signature))


def drop_customer_triggers(names: Sequence[str]) -> None:
    for name in names:
        op.execute(f"DROP TRIGGER {name} ON public.customers")


def upgrade() -> None:
    install_functions(
        (
            "functions/sync_switch_v1.sql",
            "functions/sync_customers_inserted_v1.sql",
            "functions/sync_customer_updated_v1.sql",
        ),
        NEW_FUNCTIONS,
    )
    # The mirror: its trigger first, then its initial state, so that no flag change can fall between them
    # (CREATE TRIGGER takes SHARE ROW EXCLUSIVE on feature_flags until this revision commits: flag changes
    # wait, the customer writes that read the flag do not).
    run_sql_file("triggers/feature_flags_sync_switch_v1.sql")
    execute(stamp_trigger_sql("billing_sync.feature_flags", "billing_sync_sync_switch"))
    run_sql_file("schemas/billing_sync_enabled_v1.sql")
    # Last: DROP TRIGGER takes ACCESS EXCLUSIVE on the busy customers table (blocks readers and writers), so
    # with lock retries, held only until this revision commits, a few milliseconds later. The old and the new
    # triggers swap in one transaction: no write is ever synced twice or not at all.
    with lock_retries("public.customers", mode="ACCESS EXCLUSIVE"):
        drop_customer_triggers(OLD_TRIGGERS)
        run_sql_file("triggers/customers_billing_sync_insert_v2.sql")
        run_sql_file("triggers/customers_billing_sync_update_v2.sql")
        execute(stamp_trigger_sql("public.customers", "billing_sync_customer_insert"))
        execute(stamp_trigger_sql("public.customers", "billing_sync_customer_update"))
        for signature in OLD_FUNCTIONS:
            # squawk warns that a dropped function may break its callers: these two were trigger functions,
            # revoked from PUBLIC and granted to no one, so their triggers (dropped above) were the only ones.
            execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {signature}")


def downgrade() -> None:
    install_functions(("functions/sync_customer_account_v3.sql", "functions/notify_sync_skips_v1.sql"), OLD_FUNCTIONS)
    # customers first, as the upgrade: a customer write reads feature_flags inside its transaction.
    with lock_retries("public.customers", "billing_sync.feature_flags", mode="ACCESS EXCLUSIVE"):
        drop_customer_triggers(("billing_sync_customer_insert", "billing_sync_customer_update"))
        run_sql_file("triggers/customers_billing_sync_insert_v1.sql")
        run_sql_file("triggers/customers_billing_sync_update_v1.sql")
        run_sql_file("triggers/customers_billing_sync_skips_v1.sql")
        for name in OLD_TRIGGERS:
            execute(stamp_trigger_sql("public.customers", name))
        op.execute("DROP FUNCTION billing_sync.sync_customers_inserted()")
        op.execute("DROP FUNCTION billing_sync.sync_customer_updated()")
        op.execute("DROP TRIGGER billing_sync_sync_switch ON billing_sync.feature_flags")
        op.execute("DROP FUNCTION billing_sync.sync_switch()")
        op.execute("DROP SCHEMA IF EXISTS billing_sync_enabled")
