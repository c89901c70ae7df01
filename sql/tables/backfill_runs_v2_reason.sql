-- Why a backfill run was started (revision 0009, issue 12): `sync-admin backfill --reason`, stored with the run
-- beside who started it (actor), as every flag change keeps its reason in the audit log. NULL for runs before.
-- A nullable column without a default: a catalog change only, no rewrite of the table.
ALTER TABLE billing_sync.backfill_runs ADD COLUMN reason text;
