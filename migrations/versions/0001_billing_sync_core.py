"""Billing accounts, memberships and the account_data_persistence flag, kept by triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The SQL files named here are frozen: a later behaviour is a new *_vN.sql file and a new
revision, so that upgrading or downgrading to this revision always installs exactly this.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import run_sql_file

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECTS = (
    "schemas/billing_sync_v1.sql",
    "tables/customers_v1.sql",
    "tables/billing_accounts_v1.sql",
    "tables/billing_account_memberships_v1.sql",
    "indexes/billing_account_memberships_billing_account_id_idx_v1.sql",
    "tables/feature_flags_v1.sql",
    "tables/feature_flag_events_v1.sql",
    "indexes/feature_flag_events_flag_name_occurred_at_idx_v1.sql",
    "functions/normalize_zuora_account_id_v1.sql",
    "functions/sync_customer_account_v1.sql",
    "functions/touch_updated_at_v1.sql",
    "functions/record_feature_flag_event_v1.sql",
    "functions/forbid_truncate_v1.sql",
    "triggers/feature_flags_touch_updated_at_v1.sql",
    "triggers/feature_flags_audit_v1.sql",
    "triggers/feature_flags_forbid_truncate_v1.sql",
    "triggers/customers_billing_sync_insert_v1.sql",
    "triggers/customers_billing_sync_update_v1.sql",
)


def upgrade() -> None:
    for path in OBJECTS:
        run_sql_file(path)
    # Functions are created EXECUTE-able by PUBLIC; the trigger functions are only for triggers.
    op.execute("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA billing_sync FROM PUBLIC")
    op.execute(
        "SELECT set_config('billing_sync.reason', 'created by migration 0001', true);"
        "INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('account_data_persistence', false)"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER billing_sync_customer_update ON public.customers")
    op.execute("DROP TRIGGER billing_sync_customer_insert ON public.customers")
    op.execute("DROP TABLE public.billing_account_memberships")
    op.execute("DROP TABLE public.billing_accounts")
    op.execute("DROP TABLE public.customers")
    op.execute("DROP SCHEMA billing_sync CASCADE")
