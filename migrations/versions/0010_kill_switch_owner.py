"""The kill switch never fails because of who owns its mirror (issue 12): sync_switch v2.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

Anyone with CREATE on the database can create the schema billing_sync_enabled before the sync does; v1 of
billing_sync.sync_switch then failed the kill switch ("must be owner of schema") when it tried to drop it. v2
leaves a schema it does not own in place, with a warning: the flag is off all the same (every sync function
reads the flag row), and `sync-admin doctor` reports the owner. CREATE OR REPLACE FUNCTION: no table is locked.
"""

from collections.abc import Sequence

from sync_admin.definitions import stamp_function_sql
from sync_admin.migration_ops import execute, run_sql_file

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "billing_sync.sync_switch()"


def upgrade() -> None:
    run_sql_file("functions/sync_switch_v2.sql")
    execute(stamp_function_sql(SIGNATURE))


def downgrade() -> None:
    run_sql_file("functions/sync_switch_v1.sql")
    execute(stamp_function_sql(SIGNATURE))
