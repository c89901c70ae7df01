"""The flag stays until its release: deleting it by hand is refused, and the release guard is installed (issue 13).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

* billing_sync_forbid_retirement on billing_sync.feature_flags refuses DELETE (and renaming) of the
  account_data_persistence row with one line that names the release path: every sync function reads that row, so
  deleting it, the obvious wrong way to retire the flag, would silently stop the sync for everyone. CREATE TRIGGER
  takes SHARE ROW EXCLUSIVE on feature_flags (flag changes wait; customer writes, which only read it, do not).
* billing_sync.release_blockers(flag, min_hours): what stands between the flag and its release, one line each (the
  conditions of `sync-admin rollout check`); the release revision (0013) refuses to run while it returns anything.
* The audit log's operation check admits RELEASE and RESTORE (the release's record and its downgrade's): swapped in
  one statement under ACCESS EXCLUSIVE on feature_flag_events, taken with retries; the table has a row per flag
  change (hundreds), so its validation takes a millisecond.

Downgrading drops the trigger and the function, and puts the check back; a database that was released once keeps
its RELEASE and RESTORE records (history is never deleted), so there the old check is left NOT VALID.
"""

from collections.abc import Sequence

from sync_admin.definitions import stamp_function_sql, stamp_trigger_sql
from sync_admin.migration_ops import execute, lock_retries, run_sql_file

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD = "billing_sync.forbid_flag_retirement()"
BLOCKERS = "billing_sync.release_blockers(text,numeric)"
ADMIN = "billing_sync_admin"
OPERATION_CHECK = "feature_flag_events_operation_check"
OLD_OPERATION_CHECK = f"""
-- squawk-ignore constraint-missing-not-valid
ALTER TABLE billing_sync.feature_flag_events
    DROP CONSTRAINT {OPERATION_CHECK},
    ADD CONSTRAINT {OPERATION_CHECK} CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')) NOT VALID
"""
# Validated only where no RELEASE or RESTORE record exists (they stay: the audit log is never rewritten).
VALIDATE_OLD_CHECK = f"""
DO $validate$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM billing_sync.feature_flag_events WHERE operation IN ('RELEASE', 'RESTORE')) THEN
        ALTER TABLE billing_sync.feature_flag_events VALIDATE CONSTRAINT {OPERATION_CHECK};
    END IF;
END;
$validate$
"""


def upgrade() -> None:
    run_sql_file("functions/release_blockers_v1.sql")
    execute(f"REVOKE ALL ON FUNCTION {BLOCKERS} FROM PUBLIC")
    execute(f"GRANT EXECUTE ON FUNCTION {BLOCKERS} TO {ADMIN}")
    execute(stamp_function_sql(BLOCKERS))
    run_sql_file("functions/forbid_flag_retirement_v1.sql")
    execute(f"REVOKE ALL ON FUNCTION {GUARD} FROM PUBLIC")
    execute(stamp_function_sql(GUARD))
    # The kill switch writes both tables: each lock is taken with short retried timeouts (never queued behind a
    # long reader), and none blocks a customer write, which only reads feature_flags (ACCESS SHARE).
    with lock_retries("billing_sync.feature_flags", mode="SHARE ROW EXCLUSIVE"):
        run_sql_file("triggers/feature_flags_forbid_retirement_v1.sql")
        execute(stamp_trigger_sql("billing_sync.feature_flags", "billing_sync_forbid_retirement"))
    with lock_retries("billing_sync.feature_flag_events", mode="ACCESS EXCLUSIVE"):
        run_sql_file("tables/feature_flag_events_v2_release.sql")


def downgrade() -> None:
    with lock_retries("billing_sync.feature_flags", mode="ACCESS EXCLUSIVE"):
        execute("DROP TRIGGER billing_sync_forbid_retirement ON billing_sync.feature_flags")
    with lock_retries("billing_sync.feature_flag_events", mode="ACCESS EXCLUSIVE"):
        execute(OLD_OPERATION_CHECK)
    execute(VALIDATE_OLD_CHECK)
    # squawk warns that a dropped function may break its callers: the trigger dropped above was the guard's only
    # caller, and release_blockers is called by the release revision, which is undone before this one.
    execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {GUARD}")
    execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {BLOCKERS}")
