"""Rollout gates: everyone, actors and an Unleash-compatible percentage; enabled is the kill switch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Upgrading keeps every flag's behaviour: a flag that was on (for everyone, the only way
it could be on) gets the everyone gate. Downgrading keeps it safe: revision 0001 knows
only on-for-everyone, so a flag stays on only if its everyone gate was set.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import run_sql_file

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECTS = (
    "tables/feature_flags_v2_gates.sql",
    "tables/feature_flag_actors_v1.sql",
    "triggers/feature_flag_actors_audit_v1.sql",
    "triggers/feature_flag_actors_forbid_truncate_v1.sql",
    "functions/murmur3_32_v1.sql",
    "functions/unleash_bucket_v1.sql",
    "functions/flag_enabled_for_v1.sql",
    "functions/sync_customer_account_v2.sql",
)


def upgrade() -> None:
    for path in OBJECTS:
        run_sql_file(path)
    op.execute("REVOKE ALL ON FUNCTION billing_sync.murmur3_32(bytea, bigint) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION billing_sync.unleash_bucket(text, bigint) FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION billing_sync.flag_enabled_for(text, bigint) FROM PUBLIC")
    op.execute(
        "SELECT set_config('billing_sync.reason', 'migration 0002: a flag that was on is on for everyone', true);"
        "UPDATE billing_sync.feature_flags SET everyone = true WHERE enabled AND NOT everyone"
    )


def downgrade() -> None:
    op.execute(
        "SELECT set_config('billing_sync.reason', 'migration 0002 downgrade: only on-for-everyone survives', true);"
        "UPDATE billing_sync.feature_flags SET enabled = false WHERE enabled AND NOT everyone"
    )
    run_sql_file("functions/sync_customer_account_v1.sql")
    op.execute("DROP FUNCTION billing_sync.flag_enabled_for(text, bigint)")
    op.execute("DROP FUNCTION billing_sync.unleash_bucket(text, bigint)")
    op.execute("DROP FUNCTION billing_sync.murmur3_32(bytea, bigint)")
    op.execute("DROP TABLE billing_sync.feature_flag_actors")
    op.execute("ALTER TABLE billing_sync.feature_flags DROP COLUMN percentage, DROP COLUMN everyone")
