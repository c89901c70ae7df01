"""`sync-admin verify`: the derived state against the billing tables, for the customers in the rollout.

The comparison is one set-based statement in the database (billing_sync.account_drift: EXCEPT ALL
in both directions); Python receives a handful of rows whatever the table size, so memory stays flat.
Everything the report shows is read in one REPEATABLE READ snapshot, so its counts agree with each
other even while customers are being written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from sync_admin import defaults, flags, schema

DEFAULT_EXAMPLES = defaults.VERIFY_EXAMPLES
MAX_EXAMPLES = defaults.VERIFY_MAX_EXAMPLES

DRIFT_CLASSES = (
    "missing_billing_account",
    "missing_membership",
    "stale_membership",
    "duplicate_or_orphan_membership",
)
SYNC_SKIP = "sync_skip"
IN_ROLLOUT = "in_rollout"

LABELS = {
    "missing_billing_account": "missing billing account",
    "missing_membership": "missing membership",
    "stale_membership": "stale membership",
    "duplicate_or_orphan_membership": "duplicate or orphan membership",
    SYNC_SKIP: "sync skip",
}
# What a count of each item counts (see sql/functions/account_drift_v1.sql).
UNITS = {
    "missing_billing_account": "customer",
    "missing_membership": "customer",
    "stale_membership": "membership",
    "duplicate_or_orphan_membership": "membership",
    SYNC_SKIP: "customer",
}


@dataclass(frozen=True)
class Item:
    """One line of the drift report: a drift class, or the sync skips."""

    name: str
    rows: int
    customers: int
    accounts: int
    examples: tuple[int, ...]

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.rows,
            "unit": UNITS.get(self.name),
            "customers": self.customers,
            **({"accounts": self.accounts} if self.name == "missing_billing_account" else {}),
            "example_customer_ids": list(self.examples),
        }


@dataclass(frozen=True)
class Environment:
    """Where the check ran; never the password."""

    database: str
    host: str
    port: int
    user: str
    server_version: str


@dataclass(frozen=True)
class Report:
    checked_at: datetime
    environment: Environment
    flag: flags.Flag
    customers: int
    in_rollout: int
    billing_accounts: int
    memberships: int
    items: tuple[Item, ...]
    examples: int

    def item(self, name: str) -> Item:
        return next(item for item in self.items if item.name == name)

    @property
    def drift(self) -> tuple[Item, ...]:
        return tuple(self.item(name) for name in DRIFT_CLASSES)

    @property
    def skips(self) -> Item:
        return self.item(SYNC_SKIP)

    @property
    def drift_rows(self) -> int:
        return sum(item.rows for item in self.drift)

    @property
    def drift_customers(self) -> int:
        """Customers with any drift (an upper bound: a customer can be in two classes)."""
        return sum(item.customers for item in self.drift)

    @property
    def clean(self) -> bool:
        return self.drift_rows == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(),
            "environment": self.environment.__dict__,
            "flag": {
                "name": self.flag.name,
                "enabled": self.flag.enabled,
                "everyone": self.flag.everyone,
                "percentage": self.flag.percentage,
                "actors": len(self.flag.actors),
            },
            "counts": {
                "customers": self.customers,
                "in_rollout": self.in_rollout,
                "billing_accounts": self.billing_accounts,
                "memberships": self.memberships,
            },
            "clean": self.clean,
            "drift": {item.name: item.as_json() for item in self.drift},
            "sync_skips": self.skips.as_json(),
        }


def check(conn: psycopg.Connection, examples: int = DEFAULT_EXAMPLES) -> Report:
    """The drift report, read-only, from one snapshot."""
    schema.require_installed(conn)
    outer = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if not outer:  # inside a caller's transaction, its snapshot rules
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        items = tuple(
            Item(name, rows, customers, accounts, tuple(ids))
            for name, rows, customers, accounts, ids in conn.execute(
                "SELECT item, row_count, customer_count, account_count, example_customer_ids"
                " FROM billing_sync.account_drift(%s)",
                (examples,),
            )
        )
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM public.customers), (SELECT count(*) FROM public.billing_accounts),"
            " (SELECT count(*) FROM public.billing_account_memberships), statement_timestamp(),"
            " current_setting('server_version')"
        ).fetchone()
        flag = flags.current_flag(conn, flags.ACCOUNT_DATA_PERSISTENCE)
    assert counts is not None
    customers, billing_accounts, memberships, checked_at, version = counts
    in_rollout = next(item for item in items if item.name == IN_ROLLOUT).rows
    return Report(
        checked_at=checked_at,
        environment=environment(conn, version),
        flag=flag,
        customers=customers,
        in_rollout=in_rollout,
        billing_accounts=billing_accounts,
        memberships=memberships,
        items=tuple(item for item in items if item.name != IN_ROLLOUT),
        examples=examples,
    )


def environment(conn: psycopg.Connection, server_version: str) -> Environment:
    info = conn.info
    return Environment(info.dbname, info.host, info.port, info.user, server_version)
