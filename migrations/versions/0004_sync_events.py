"""Monitoring: skipped customer writes are recorded in sync_events and announced once per statement;
definition hashes for `sync-admin doctor`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Installs the events table, the sync function v3 (records one event per skipped customer write), the
statement-level trigger that sends one pg_notify on channel billing_sync_skips per statement that
recorded skips, and the function that stores a definition hash in an object's comment. Then it stamps
every function of billing_sync and every trigger of the sync with that hash (doctor compares them
with the live definitions). Downgrading restores the sync function v2, drops what this revision added
(the recorded events with it) and removes the hash comments.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import execute, lock_retries, run_sql_file

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Need no lock on a table in use (CREATE OR REPLACE FUNCTION locks no table).
OBJECTS = (
    "tables/sync_events_v1.sql",
    "indexes/sync_events_occurred_at_idx_v1.sql",
    "functions/sync_customer_account_v3.sql",
    "functions/notify_sync_skips_v1.sql",
    "functions/stamp_definition_hash_v1.sql",
)

FUNCTIONS = (
    "billing_sync.notify_sync_skips()",
    "billing_sync.stamp_definition_hash(regclass, oid)",
)

# The sync's triggers: those of the billing_sync tables, and those on public.customers named billing_sync_*.
SYNC_TRIGGERS = """
    FROM pg_catalog.pg_trigger t
    JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    WHERE NOT t.tgisinternal
      AND (c.relnamespace = 'billing_sync'::regnamespace
           OR (t.tgrelid = 'public.customers'::regclass AND t.tgname LIKE 'billing\\_sync\\_%'))
"""

STAMP = f"""
SELECT billing_sync.stamp_definition_hash('pg_catalog.pg_proc', p.oid)
FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'billing_sync'::regnamespace ORDER BY p.oid;
SELECT billing_sync.stamp_definition_hash('pg_catalog.pg_trigger', t.oid) {SYNC_TRIGGERS} ORDER BY t.oid
"""

# DO, not the stamp function: it is dropped here. Only comments this revision wrote are removed.
UNSTAMP = f"""
DO $unstamp$
DECLARE
    target text;
BEGIN
    FOR target IN
        SELECT pg_catalog.format('FUNCTION %s', p.oid::regprocedure)
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'billing_sync'::regnamespace
          AND pg_catalog.obj_description(p.oid, 'pg_proc') LIKE 'sync-admin:definition-%'
        UNION ALL
        SELECT pg_catalog.format('TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) {SYNC_TRIGGERS}
          AND pg_catalog.obj_description(t.oid, 'pg_trigger') LIKE 'sync-admin:definition-%'
    LOOP
        EXECUTE pg_catalog.format('COMMENT ON %s IS NULL', target);
    END LOOP;
END
$unstamp$
"""


def upgrade() -> None:
    for path in OBJECTS:
        run_sql_file(path)
    # Functions are created EXECUTE-able by PUBLIC; these are for the trigger and for sync-admin.
    for function in FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    # Last: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the busy customers table (blocks its writers),
    # so it is taken with lock retries and held only until this revision commits. Stamping comments
    # on customers' triggers needs a weaker lock, already held by then.
    with lock_retries("public.customers", mode="SHARE ROW EXCLUSIVE"):
        run_sql_file("triggers/customers_billing_sync_skips_v1.sql")
        execute(STAMP)


def downgrade() -> None:
    run_sql_file("functions/sync_customer_account_v2.sql")  # locks no table; records nothing from here on
    # DROP TRIGGER takes ACCESS EXCLUSIVE on customers: with lock retries, last.
    with lock_retries("public.customers", mode="ACCESS EXCLUSIVE"):
        op.execute("DROP TRIGGER billing_sync_customer_skips ON public.customers")
        op.execute("DROP FUNCTION billing_sync.notify_sync_skips()")
        op.execute("DROP FUNCTION billing_sync.stamp_definition_hash(regclass, oid)")
        op.execute("DROP TABLE billing_sync.sync_events")
        execute(UNSTAMP)
