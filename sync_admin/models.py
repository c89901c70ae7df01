"""SQLAlchemy models of the tables the migrations build: a description, never the way to build them.

The schema is built by the revisions and their SQL files only (shared field notes 5: never
`create_all`). These models exist so that autogenerate can compare them with a migrated database
(`alembic check`, pytest-alembic's test_model_definitions_match_ddl in tests/test_alembic.py): a
revision that changes a table without this file, or the reverse, fails that test. Server defaults
are spelled the way PostgreSQL prints them back, which is what the comparison reads.

Functions, triggers, grants and CHECK constraints are not compared by autogenerate; the catalog
fingerprints of tests/test_migrations_roundtrip.py and the pg_dump comparison of
tests/test_offline_sql.py cover those.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

metadata = MetaData()

SYNC_SCHEMA = "billing_sync"
NOW = text("now()")
ZERO = text("0")
FALSE = text("false")


class Base(DeclarativeBase):
    metadata = metadata


def _timestamp(default: Any = NOW) -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=default)


def _counter() -> Mapped[int]:
    return mapped_column(BigInteger, nullable=False, server_default=ZERO)


# --- public: the portal's table and the billing tables the sync maintains -------------------------


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = ({"comment": "billing-sync: created by migration 0001, dropped by its downgrade"},)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    email: Mapped[str] = mapped_column(Text, nullable=False)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    company: Mapped[str | None] = mapped_column(Text)
    zuora_account_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


class BillingAccount(Base):
    __tablename__ = "billing_accounts"
    __table_args__ = (UniqueConstraint("zuora_account_id", name="billing_accounts_zuora_account_id_key"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    zuora_account_id: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


class BillingAccountMembership(Base):
    __tablename__ = "billing_account_memberships"
    __table_args__ = (
        UniqueConstraint(
            "customer_id", "billing_account_id", name="billing_account_memberships_customer_id_billing_account_id_key"
        ),
        Index("billing_account_memberships_billing_account_id_idx", "billing_account_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    billing_account_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("billing_accounts.id", name="billing_account_memberships_billing_account_id_fkey"),
        nullable=False,
    )
    # No foreign key since revision 0007: the triggers billing_sync_customer_delete and _rekey on customers do
    # what its cascade did (sql/functions/sync_customer_removed_v1.sql says why).
    customer_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()


# --- billing_sync: the flag, its gates and audit, the backfill, the sync's events ---------------------


class FeatureFlag(Base):
    __tablename__ = "feature_flags"
    __table_args__ = (
        CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,62}$'", name="feature_flags_name_format"),
        CheckConstraint("percentage BETWEEN 0 AND 100", name="feature_flags_percentage_range"),
        {"schema": SYNC_SCHEMA},
    )

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=FALSE)
    updated_at: Mapped[datetime] = _timestamp()
    everyone: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=FALSE)
    percentage: Mapped[int] = mapped_column(Integer, nullable=False, server_default=ZERO)


class FeatureFlagActor(Base):
    __tablename__ = "feature_flag_actors"
    __table_args__ = (
        PrimaryKeyConstraint("flag_name", "customer_id", name="feature_flag_actors_pkey"),
        {"schema": SYNC_SCHEMA},
    )

    flag_name: Mapped[str] = mapped_column(
        Text,
        ForeignKey(
            f"{SYNC_SCHEMA}.feature_flags.name",
            name="feature_flag_actors_flag_name_fkey",
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
    )
    customer_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _timestamp()


class FeatureFlagEvent(Base):
    __tablename__ = "feature_flag_events"
    __table_args__ = (
        CheckConstraint("operation IN ('INSERT', 'UPDATE', 'DELETE')", name="feature_flag_events_operation_check"),
        Index("feature_flag_events_flag_name_occurred_at_idx", "flag_name", "occurred_at"),
        {"schema": SYNC_SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    occurred_at: Mapped[datetime] = _timestamp(text("clock_timestamp()"))
    flag_name: Mapped[str] = mapped_column(Text, nullable=False)
    table_name: Mapped[str] = mapped_column(Text, nullable=False)
    operation: Mapped[str] = mapped_column(Text, nullable=False)
    database_user: Mapped[str] = mapped_column(Text, nullable=False)
    application_name: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    transaction_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class BackfillRun(Base):
    __tablename__ = "backfill_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'finished', 'abandoned')", name="backfill_runs_status_check"),
        CheckConstraint("(status = 'running') = (finished_at IS NULL)", name="backfill_runs_finished_check"),
        Index(
            "backfill_runs_one_running_idx",
            "status",
            unique=True,
            postgresql_where=text("status = 'running'::text"),
        ),
        {"schema": SYNC_SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'running'::text"))
    max_id: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int] = _counter()
    last_id: Mapped[int | None] = mapped_column(BigInteger)
    scanned: Mapped[int] = _counter()
    in_rollout: Mapped[int] = _counter()
    out_of_state: Mapped[int] = _counter()
    accounts_created: Mapped[int] = _counter()
    memberships_added: Mapped[int] = _counter()
    memberships_removed: Mapped[int] = _counter()
    busy: Mapped[int] = _counter()
    batches: Mapped[int] = mapped_column(Integer, nullable=False, server_default=ZERO)
    database_user: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("SESSION_USER"))
    actor: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # revision 0009
    started_at: Mapped[datetime] = _timestamp()
    updated_at: Mapped[datetime] = _timestamp()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SyncEvent(Base):
    __tablename__ = "sync_events"
    __table_args__ = (
        Index("sync_events_occurred_at_idx", "occurred_at"),
        Index("sync_events_transaction_id_idx", "transaction_id"),  # revision 0011: watch reads by snapshot
        {"schema": SYNC_SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    occurred_at: Mapped[datetime] = _timestamp(text("clock_timestamp()"))
    customer_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    operation: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str | None] = mapped_column(Text)
    value_length: Mapped[int | None] = mapped_column(Integer)
    transaction_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    database_user: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("SESSION_USER"))
    application_name: Mapped[str | None] = mapped_column(
        Text, server_default=text("NULLIF(current_setting('application_name'::text, true), ''::text)")
    )


class SyncRepair(Base):
    """A customer the sync had to leave, waiting for the repair (revision 0007; sql/tables/sync_repairs_v1.sql)."""

    __tablename__ = "sync_repairs"
    __table_args__ = (
        Index("sync_repairs_customer_id_idx", "customer_id"),
        {"schema": SYNC_SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    recorded_at: Mapped[datetime] = _timestamp(text("clock_timestamp()"))
    transaction_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    previous_customer_id: Mapped[int | None] = mapped_column(BigInteger)
