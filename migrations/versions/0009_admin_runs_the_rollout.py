"""Least privilege that works: the admin role runs every rollout and monitoring command (issue 12).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Revision 0005 gave billing_sync_admin the flag commands only: `verify`, `backfill`, `rollout check`, `errors`,
`watch`, `heal`, `doctor` and `db current` failed with "permission denied" for the people the README told to use
it. What each needs, and nothing more (no write on customers or on the billing tables themselves: those stay the
SECURITY DEFINER functions' own, which check what they write):

* `db current`, `doctor`: read alembic_version; `doctor` reads the repair queue too.
* `verify`, `rollout check`: the drift report (account_drift) and the row counts of the billing tables.
* `backfill`: its runs (backfill_runs: read, start, abandon), its batches (backfill_batch), the sweep's drift
  (drifted_customers) and its repairs (sync_customers), and the queue it reports.
* `heal`: the repair of the queue (repair_queued) and the queue to read.
* `errors`, `watch`, `rollout check`: the skip events to read; `events prune`: to delete old ones.

And `sync-admin backfill --reason`: the column backfill_runs.reason, beside the actor a run already had.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import run_sql_file

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIN = "billing_sync_admin"

# (privileges, objects): granted by the upgrade, revoked by the downgrade, so the two cannot drift.
GRANTS = (
    ("SELECT", "TABLE public.alembic_version"),
    ("SELECT", "TABLE public.billing_accounts, public.billing_account_memberships"),
    ("SELECT, INSERT, UPDATE (status, finished_at, updated_at)", "TABLE billing_sync.backfill_runs"),
    ("SELECT", "TABLE billing_sync.sync_repairs"),
    ("SELECT, DELETE", "TABLE billing_sync.sync_events"),
    (
        "EXECUTE",
        "FUNCTION billing_sync.account_drift(integer), billing_sync.backfill_batch(bigint, integer),"
        " billing_sync.drifted_customers(integer), billing_sync.sync_customers(bigint[]),"
        " billing_sync.repair_queued(integer, bigint)",
    ),
)


def upgrade() -> None:
    run_sql_file("tables/backfill_runs_v2_reason.sql")
    for privileges, objects in GRANTS:
        op.execute(f"GRANT {privileges} ON {objects} TO {ADMIN}")


def downgrade() -> None:
    for privileges, objects in reversed(GRANTS):
        op.execute(f"REVOKE {privileges} ON {objects} FROM {ADMIN}")
    op.execute("ALTER TABLE billing_sync.backfill_runs DROP COLUMN reason")
