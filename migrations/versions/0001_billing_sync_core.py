"""Billing accounts, memberships and the account_data_persistence flag, kept by triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The SQL files named here are frozen: a later behaviour is a new *_vN.sql file and a new
revision, so that upgrading or downgrading to this revision always installs exactly this.

An existing customers table (the portal's own, with its rows) is adopted as it is, once
checks/customers_adoptable_v1.sql has found what the sync needs in it; the downgrade drops only a
customers table this revision created. Everything that locks customers (the triggers, the
memberships' foreign key, added NOT VALID and validated by 0002) comes last, under lock retries.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import execute, lock_retries, run_sql_file

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECTS = (
    # An existing customers table is adopted; checked first so that one that does not fit installs nothing.
    "checks/customers_adoptable_v1.sql",
    # A precondition added by issue 11 (it installs nothing): a partitioned customers table is refused.
    "checks/customers_not_partitioned_v1.sql",
    "schemas/billing_sync_v1.sql",
    "tables/customers_v1.sql",
    "tables/billing_accounts_v1.sql",
    "tables/billing_account_memberships_v1.sql",
    "indexes/billing_account_memberships_billing_account_id_idx_v1.sql",
    "tables/feature_flags_v1.sql",
    "tables/feature_flag_events_v1.sql",
    "indexes/feature_flag_events_flag_name_occurred_at_idx_v1.sql",
    "functions/normalize_zuora_account_id_v1.sql",
    "functions/account_lock_key_v1.sql",
    "functions/create_billing_account_v1.sql",
    "functions/sync_customer_account_v1.sql",
    "functions/touch_updated_at_v1.sql",
    "functions/record_feature_flag_event_v1.sql",
    "functions/forbid_truncate_v1.sql",
    "triggers/feature_flags_touch_updated_at_v1.sql",
    "triggers/feature_flags_audit_v1.sql",
    "triggers/feature_flags_forbid_truncate_v1.sql",
)

# What locks public.customers, an existing busy table: SHARE ROW EXCLUSIVE, which blocks its writers.
CUSTOMERS_OBJECTS = (
    "constraints/billing_account_memberships_customer_id_fkey_v1.sql",  # NOT VALID; 0002 validates it
    "triggers/customers_billing_sync_insert_v1.sql",
    "triggers/customers_billing_sync_update_v1.sql",
)

# Only a customers table this revision created is dropped (sql/tables/customers_v1.sql marks it).
DROP_CUSTOMERS_IF_CREATED_HERE = """
DO $customers$
BEGIN
    IF pg_catalog.obj_description('public.customers'::pg_catalog.regclass, 'pg_class')
       LIKE 'billing-sync: created by migration 0001%' THEN
        DROP TABLE public.customers;
    ELSE
        RAISE NOTICE 'public.customers was adopted, not created by revision 0001: kept with its rows';
    END IF;
END
$customers$
"""


def upgrade() -> None:
    for path in OBJECTS:
        run_sql_file(path)
    # Functions are created EXECUTE-able by PUBLIC; the trigger functions are only for triggers.
    op.execute("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA billing_sync FROM PUBLIC")
    op.execute(
        "SELECT set_config('billing_sync.reason', 'created by migration 0001', true);"
        "INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('account_data_persistence', false)"
    )
    # Last: the lock is held until this revision commits, a few milliseconds from here.
    with lock_retries("public.customers", mode="SHARE ROW EXCLUSIVE"):
        for path in CUSTOMERS_OBJECTS:
            run_sql_file(path)


def downgrade() -> None:
    # DROP TRIGGER, and dropping the memberships' foreign key, take ACCESS EXCLUSIVE on customers.
    with lock_retries("public.customers", mode="ACCESS EXCLUSIVE"):
        op.execute("DROP TRIGGER billing_sync_customer_update ON public.customers")
        op.execute("DROP TRIGGER billing_sync_customer_insert ON public.customers")
        op.execute("DROP TABLE public.billing_account_memberships")
    op.execute("DROP TABLE public.billing_accounts")
    execute(DROP_CUSTOMERS_IF_CREATED_HERE)
    op.execute("DROP SCHEMA billing_sync CASCADE")
