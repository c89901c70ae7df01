"""Release: account_data_persistence is retired, the sync is always on (issue 13).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

The last step of the rollout. It runs only where the rollout is complete: the guard
(sql/release/account_data_persistence_guard_v1.sql, the first statement, online and in the offline SQL) refuses
with one line saying what is missing while billing_sync.release_blockers returns anything (the rollout check: on for
everyone for the verification period without a kill-switch event, no drift, no skips). An override
(billing_sync.release_override, `sync-admin db upgrade --release-override REASON`) releases anyway and is recorded
with what was missing. A new, empty database (no customer, the flag never on) is released at once.

What the release changes, in one transaction:
* the sync functions read no flag: sync_customers_inserted v4 and sync_customer_updated v3 (v3 and v2 without the
  gates), customers_in_rollout v2 and flag_enabled_for v2 (account_data_persistence: every customer);
* the customers triggers ask nothing in their WHEN (insert v3, update v3): no kill switch, no mirror;
  billing_sync.sync_switch, its trigger and the mirror schema billing_sync_enabled go;
* the flag row and its actors go, with one audit record of the retirement (operation RELEASE: who, why, the check
  it passed or the override, the flag row and actors as they were); the audit log keeps the whole history.
The guard reads for as long as a verify and takes no lock; the swap then takes ACCESS EXCLUSIVE on customers and
the two flag tables together, with short retried lock timeouts, for milliseconds: customers first, as 0006 (a
customer write holds customers and then reads the flag tables inside its transaction).

Downgrading restores the flag on for everyone with the gates it had (percentage, actors), audited (RESTORE), the
kill switch's mirror with it, and the functions and triggers of 0012: the rollback of a release.
"""

from collections.abc import Sequence

from sync_admin.definitions import stamp_function_sql, stamp_trigger_sql
from sync_admin.migration_ops import execute, lock_retries, run_sql_file

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (released file, file of 0012, signature): the same signatures, CREATE OR REPLACE.
FUNCTIONS = (
    ("functions/sync_customers_inserted_v4.sql", "functions/sync_customers_inserted_v3.sql",
     "billing_sync.sync_customers_inserted()"),
    ("functions/sync_customer_updated_v3.sql", "functions/sync_customer_updated_v2.sql",
     "billing_sync.sync_customer_updated()"),
    ("functions/customers_in_rollout_v2.sql", "functions/customers_in_rollout_v1.sql",
     "billing_sync.customers_in_rollout(text)"),
    ("functions/flag_enabled_for_v2.sql", "functions/flag_enabled_for_v1.sql",
     "billing_sync.flag_enabled_for(text,bigint)"),
)  # fmt: skip
# (released file, file of 0012, name) of the triggers on public.customers that change.
CUSTOMER_TRIGGERS = (
    ("triggers/customers_billing_sync_insert_v3.sql", "triggers/customers_billing_sync_insert_v2.sql",
     "billing_sync_customer_insert"),
    ("triggers/customers_billing_sync_update_v3.sql", "triggers/customers_billing_sync_update_v2.sql",
     "billing_sync_customer_update"),
)  # fmt: skip
SWITCH = "billing_sync.sync_switch()"
FLAG_TABLES = ("billing_sync.feature_flags", "billing_sync.feature_flag_actors")
# The triggers the retirement and its undoing run without: the audit triggers (the release is one record, not one
# per actor) and the refusal to delete the flag row by hand (this is the release).
QUIET = (
    ("billing_sync.feature_flags", "billing_sync_audit"),
    ("billing_sync.feature_flags", "billing_sync_forbid_retirement"),
    ("billing_sync.feature_flag_actors", "billing_sync_audit"),
)
# The mirror schema is dropped when this role may (sync_switch created it); one created by another role is left, as
# sync_switch v2 leaves it, with a warning: nothing reads it any more, and `sync-admin doctor` reports it.
DROP_MIRROR = """
DO $mirror$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'billing_sync_enabled'
               AND pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')) THEN
        DROP SCHEMA billing_sync_enabled;
    ELSIF pg_catalog.to_regnamespace('billing_sync_enabled') IS NOT NULL THEN
        RAISE WARNING 'schema billing_sync_enabled is owned by another role: left in place (nothing reads it)';
    END IF;
END;
$mirror$
"""


def install(path: str, signature: str) -> None:
    run_sql_file(path)
    execute(stamp_function_sql(signature))


def swap_customer_triggers(released: bool) -> None:
    for new, old, name in CUSTOMER_TRIGGERS:
        execute(f"DROP TRIGGER {name} ON public.customers")
        run_sql_file(new if released else old)
        execute(stamp_trigger_sql("public.customers", name))


def quietly(statement_file: str) -> None:
    """Run a release file with the QUIET triggers disabled (in this transaction: ALTER TABLE is transactional)."""
    for table, trigger in QUIET:
        execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    run_sql_file(statement_file)
    for table, trigger in QUIET:
        execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def upgrade() -> None:
    run_sql_file("release/account_data_persistence_guard_v1.sql")
    for new, _old, signature in FUNCTIONS:
        install(new, signature)
    with lock_retries("public.customers", *FLAG_TABLES, mode="ACCESS EXCLUSIVE"):
        swap_customer_triggers(released=True)
        execute("DROP TRIGGER billing_sync_sync_switch ON billing_sync.feature_flags")
        # squawk warns that a dropped function may break its callers: sync_switch was a trigger function, revoked
        # from PUBLIC, and its only trigger is dropped above.
        execute(f"-- squawk-ignore ban-drop-function\nDROP FUNCTION {SWITCH}")
        execute(DROP_MIRROR)
        quietly("release/account_data_persistence_retire_v1.sql")


def downgrade() -> None:
    for _new, old, signature in FUNCTIONS:
        install(old, signature)
    install("functions/sync_switch_v2.sql", SWITCH)
    execute(f"REVOKE ALL ON FUNCTION {SWITCH} FROM PUBLIC")
    with lock_retries("public.customers", *FLAG_TABLES, mode="ACCESS EXCLUSIVE"):
        run_sql_file("triggers/feature_flags_sync_switch_v1.sql")
        execute(stamp_trigger_sql("billing_sync.feature_flags", "billing_sync_sync_switch"))
        # The flag row comes back on: billing_sync_sync_switch creates the mirror in this transaction.
        quietly("release/account_data_persistence_restore_v1.sql")
        swap_customer_triggers(released=False)
