"""Rollout gates: everyone, actors and an Unleash-compatible percentage; enabled is the kill switch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Upgrading keeps every flag's behaviour: a flag that was on (for everyone, the only way
it could be on) gets the everyone gate. Downgrading keeps it safe: revision 0001 knows
only on-for-everyone, so a flag stays on only if its everyone gate was set.

Locks: the sync trigger on customers reads feature_flags on every customer write with an account,
so the ACCESS EXCLUSIVE lock that adding the gate columns takes is taken with lock retries, after
everything that does not need it. The revision also validates the foreign key that 0001 added
NOT VALID: in a transaction other than the one that added it, with locks that block no writer.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import lock_retries, run_sql_file

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Need no lock on a table in use.
FUNCTIONS = (
    "functions/murmur3_32_v1.sql",
    "functions/unleash_bucket_v1.sql",
)

# Need ACCESS EXCLUSIVE on feature_flags (the gate columns; the actors' foreign key to it).
FLAG_OBJECTS = (
    "tables/feature_flags_v2_gates.sql",
    "tables/feature_flag_actors_v1.sql",
    "triggers/feature_flag_actors_audit_v1.sql",
    "triggers/feature_flag_actors_forbid_truncate_v1.sql",
    "functions/flag_enabled_for_v1.sql",
    "functions/sync_customer_account_v2.sql",
)


def upgrade() -> None:
    # SHARE UPDATE EXCLUSIVE on the memberships, ROW SHARE on customers: writers go on meanwhile.
    op.execute(
        "ALTER TABLE public.billing_account_memberships"
        " VALIDATE CONSTRAINT billing_account_memberships_customer_id_fkey"
    )
    for path in FUNCTIONS:
        run_sql_file(path)
    with lock_retries("billing_sync.feature_flags", mode="ACCESS EXCLUSIVE"):
        for path in FLAG_OBJECTS:
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
    with lock_retries("billing_sync.feature_flags", "billing_sync.feature_flag_actors", mode="ACCESS EXCLUSIVE"):
        op.execute("DROP TABLE billing_sync.feature_flag_actors")
        op.execute("ALTER TABLE billing_sync.feature_flags DROP COLUMN percentage, DROP COLUMN everyone")
