"""An index for `sync-admin watch`, which reads the skip events by snapshot (issue 12).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

`watch` reads from billing_sync.sync_events the events of every transaction that committed since its last read
(not visible in that read's snapshot), whether or not a notification announced them: sync_events_transaction_id_idx
finds them. Built with CREATE INDEX CONCURRENTLY (no lock that blocks writers), outside the revision's transaction.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import create_index_concurrently

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "billing_sync.sync_events_transaction_id_idx"


def upgrade() -> None:
    create_index_concurrently("indexes/sync_events_transaction_id_idx_v1.sql", INDEX)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
