"""Least privilege: the application role billing_sync_app and the flag admin role billing_sync_admin.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

billing_sync_app reads and writes customers and reads the billing tables; the sync follows its
customer writes through the SECURITY DEFINER trigger functions, so it needs no right on billing_sync
or on the billing tables beyond reading them. It cannot change a flag, the audit log or the billing
tables: PostgreSQL refuses. billing_sync_admin changes flags (the kill switch and the gates) and
reads the audit log; it cannot alter or delete audit rows: only the owner of the table can.

Both are NOLOGIN group roles: login roles are made members of them (GRANT billing_sync_app TO portal).
Roles are cluster-wide: they are created only when missing (sql/roles/), and the downgrade revokes
what this revision granted in this database but keeps the roles, which other databases of the
cluster may use. Grants take no lock that blocks a writer (ACCESS SHARE at most).

A later revision that adds a table or function these roles need grants it itself: nothing here
grants on future objects.
"""

from collections.abc import Sequence

from alembic import op

from sync_admin.migration_ops import run_sql_file

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP = "billing_sync_app"
ADMIN = "billing_sync_admin"

ROLES = (
    "roles/billing_sync_app_v1.sql",
    "roles/billing_sync_admin_v1.sql",
)

# (privileges, objects, role): granted by the upgrade, revoked by the downgrade, so the two cannot drift.
GRANTS = (
    # The application: its customers, the billing tables to read, and the flag question.
    ("SELECT, INSERT, UPDATE, DELETE", "TABLE public.customers", APP),
    ("SELECT", "TABLE public.billing_accounts, public.billing_account_memberships", APP),
    ("USAGE", "SCHEMA billing_sync", APP),
    ("EXECUTE", "FUNCTION billing_sync.flag_enabled_for(text, bigint)", APP),
    # The admin: the kill switch and the gates, the audit log to read, and what `sync-admin flag`
    # reads on the way (actors must be customers; rollout counts and buckets). Only the flag's state
    # columns are updatable: not its name, nor updated_at (the trigger keeps that).
    ("USAGE", "SCHEMA billing_sync", ADMIN),
    ("SELECT, UPDATE (enabled, everyone, percentage)", "TABLE billing_sync.feature_flags", ADMIN),
    ("SELECT, INSERT, DELETE", "TABLE billing_sync.feature_flag_actors", ADMIN),
    ("SELECT", "TABLE billing_sync.feature_flag_events", ADMIN),
    ("SELECT", "TABLE public.customers", ADMIN),
    (
        "EXECUTE",
        "FUNCTION billing_sync.flag_enabled_for(text, bigint), billing_sync.unleash_bucket(text, bigint),"
        " billing_sync.murmur3_32(bytea, bigint)",
        ADMIN,
    ),
)


def upgrade() -> None:
    for path in ROLES:
        run_sql_file(path)
    for privileges, objects, role in GRANTS:
        op.execute(f"GRANT {privileges} ON {objects} TO {role}")


def downgrade() -> None:
    for privileges, objects, role in reversed(GRANTS):
        op.execute(f"REVOKE {privileges} ON {objects} FROM {role}")
