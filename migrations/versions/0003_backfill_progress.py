"""Backfill and drift check: the backfill progress table, the batch function, the drift report.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Adds objects only; the sync triggers and their functions are unchanged. Downgrading drops
exactly what this revision added (the progress of past backfill runs with it).
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import run_sql_file

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECTS = (
    "tables/backfill_runs_v1.sql",
    "indexes/backfill_runs_one_running_idx_v1.sql",
    "functions/customers_in_rollout_v1.sql",
    "functions/backfill_batch_v1.sql",
    "functions/account_drift_v1.sql",
)

FUNCTIONS = (
    "billing_sync.account_drift(integer)",
    "billing_sync.backfill_batch(bigint, integer)",
    "billing_sync.customers_in_rollout(text)",
)


def upgrade() -> None:
    for path in OBJECTS:
        run_sql_file(path)
    # Functions are created EXECUTE-able by PUBLIC; these are for sync-admin, run as the owner.
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP TABLE billing_sync.backfill_runs")
