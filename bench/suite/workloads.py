"""What is measured: the pgbench scripts, the bulk statements, and the scenarios that compare them.

A scenario is a ratio of two sides measured side by side. pgbench sides are TPS (ratio A / B, higher is
better); bulk sides are wall-clock seconds (ratio A / B, lower is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# pgbench scripts (bench/suite/pgbench/<name>.sql); :customers and :accounts come from pgbench -D. Every value
# is an existing A account, as most writes of a portal are (the bulk statements cover account creation).
SCRIPTS_DIR = Path(__file__).resolve().parent / "pgbench"
SCRIPTS = ("update_zuora", "update_unrelated", "insert_account", "app_update_zuora", "app_insert_account")

# Bulk statements; %(rows)s is the number of rows. Customer g moves to (or is inserted on) account
# B<(g+1)/2>: two customers per account, the first new_accounts of them still to be created.
BULK_UPDATE = "UPDATE public.customers SET zuora_account_id = 'B' || ((id + 1) / 2) WHERE id <= %(rows)s"
BULK_INSERT = (
    "INSERT INTO public.customers (email, zuora_account_id)"
    " SELECT 'n' || g || '@example.com', 'B' || ((g + 1) / 2) FROM generate_series(1, %(rows)s) g"
)
BULK_UNRELATED = "UPDATE public.customers SET email = 'x' || id || '@example.com' WHERE id <= %(rows)s"

# The same writes by hand, set-based, without trigger, each one statement: the changed customers come from
# RETURNING; missing accounts are inserted, stale memberships deleted, the derived ones inserted.
BY_HAND_UPDATE = (
    """WITH changed AS (
    UPDATE public.customers SET zuora_account_id = 'B' || ((id + 1) / 2) WHERE id <= %(rows)s
    RETURNING id, billing_sync.normalize_zuora_account_id(zuora_account_id) AS account
),
new_accounts AS (
    INSERT INTO public.billing_accounts (zuora_account_id)
    SELECT DISTINCT c.account FROM changed c
    WHERE c.account IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = c.account)
    ORDER BY 1
    ON CONFLICT (zuora_account_id) DO NOTHING
    RETURNING id, zuora_account_id
),
resolved AS (
    SELECT c.id, coalesce(a.id, n.id) AS account_id
    FROM changed c
    LEFT JOIN public.billing_accounts a ON a.zuora_account_id = c.account
    LEFT JOIN new_accounts n ON n.zuora_account_id = c.account
),
removed AS (
    DELETE FROM public.billing_account_memberships m
    USING resolved r
    WHERE m.customer_id = r.id AND m.billing_account_id IS DISTINCT FROM r.account_id
)
INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
SELECT r.account_id, r.id FROM resolved r
WHERE r.account_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM public.billing_account_memberships m
                  WHERE m.customer_id = r.id AND m.billing_account_id = r.account_id)
ON CONFLICT (customer_id, billing_account_id) DO NOTHING""",
)
BY_HAND_INSERT = (
    """WITH inserted AS (
    INSERT INTO public.customers (email, zuora_account_id)
    SELECT 'n' || g || '@example.com', 'B' || ((g + 1) / 2) FROM generate_series(1, %(rows)s) g
    RETURNING id, billing_sync.normalize_zuora_account_id(zuora_account_id) AS account
),
new_accounts AS (
    INSERT INTO public.billing_accounts (zuora_account_id)
    SELECT DISTINCT i.account FROM inserted i
    WHERE i.account IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM public.billing_accounts a WHERE a.zuora_account_id = i.account)
    ORDER BY 1
    ON CONFLICT (zuora_account_id) DO NOTHING
    RETURNING id, zuora_account_id
),
accounts AS (
    SELECT n.id, n.zuora_account_id FROM new_accounts n
    UNION ALL
    SELECT a.id, a.zuora_account_id FROM public.billing_accounts a
    WHERE a.zuora_account_id IN (SELECT i.account FROM inserted i)
)
INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)
SELECT a.id, i.id FROM inserted i JOIN accounts a ON a.zuora_account_id = i.account""",
)

# One statement creating more new accounts than a transaction can hold advisory locks for at the default
# max_locks_per_transaction, if the sync takes one per account: does the customer write still succeed?
MANY_ACCOUNTS = (
    "INSERT INTO public.customers (email, zuora_account_id)"
    " SELECT 'm' || g || '@example.com', 'M' || g FROM generate_series(1, %(rows)s) g"
)
MANY_ACCOUNTS_ROWS = 20_000


@dataclass(frozen=True)
class Side:
    """One variant: a database (sync, none or app), the flag state (sync only) and what runs."""

    database: str
    flag: str | None
    work: str  # pgbench: a key of SCRIPTS; bulk: a key of BULK
    label: str


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "pgbench" (TPS, higher is better) or "bulk" (seconds, lower is better)
    title: str
    a: Side
    b: Side
    target: float | None  # None: reported, no target
    at_least: bool  # True: median ratio >= target; False: <= target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.at_least else '<='} {self.target:g}"

    def met(self, ratio: float | None) -> bool | None:
        if self.target is None or ratio is None:
            return None
        return ratio >= self.target if self.at_least else ratio <= self.target


BULK = {
    "sync_update": (BULK_UPDATE,),
    "by_hand_update": BY_HAND_UPDATE,
    "sync_insert": (BULK_INSERT,),
    "by_hand_insert": BY_HAND_INSERT,
    "unrelated_update": (BULK_UNRELATED,),
}


def _pgbench(name: str, title: str, a: Side, b: Side, target: float | None, at_least: bool = True) -> Scenario:
    return Scenario(name, "pgbench", title, a, b, target, at_least)


def _bulk(name: str, title: str, a: Side, b: Side, target: float | None) -> Scenario:
    return Scenario(name, "bulk", title, a, b, target, at_least=False)


SCENARIOS = (
    _pgbench(
        "flag_off_insert",
        "single-row insert with an account, flag off: TPS / none",
        Side("sync", "off", "insert_account", "sync, flag off"),
        Side("none", None, "insert_account", "none"),
        0.97,
    ),
    _pgbench(
        "flag_off_update",
        "single-row update changing zuora_account_id, flag off: TPS / none",
        Side("sync", "off", "update_zuora", "sync, flag off"),
        Side("none", None, "update_zuora", "none"),
        0.97,
    ),
    _pgbench(
        "unrelated_update",
        "single-row update of another column (email), flag on: TPS / none",
        Side("sync", "everyone", "update_unrelated", "sync, flag on"),
        Side("none", None, "update_unrelated", "none"),
        0.97,
    ),
    _pgbench(
        "zuora_change_vs_app",
        "single-row update changing zuora_account_id, flag on: TPS / application callbacks",
        Side("sync", "everyone", "update_zuora", "sync, flag on"),
        Side("app", None, "app_update_zuora", "application callbacks"),
        1.5,
    ),
    _pgbench(
        "insert_vs_app",
        "insert of a new customer with an account, flag on: TPS / application callbacks",
        Side("sync", "everyone", "insert_account", "sync, flag on"),
        Side("app", None, "app_insert_account", "application callbacks"),
        1.5,
    ),
    _pgbench(
        "gate_50_vs_everyone",
        "single-row account changes, flag at 50 % vs on for everyone: TPS ratio",
        Side("sync", "50%", "update_zuora", "sync, 50 %"),
        Side("sync", "everyone", "update_zuora", "sync, everyone"),
        0.9,
    ),
    _bulk(
        "bulk_update",
        "one UPDATE changing the account of every bulk row, flag on: time / by hand, set-based",
        Side("sync", "everyone", "sync_update", "sync, flag on"),
        Side("none", None, "by_hand_update", "by hand, set-based"),
        1.5,
    ),
    _bulk(
        "bulk_insert",
        "one INSERT ... SELECT of bulk rows customers with accounts, flag on: time / by hand, set-based",
        Side("sync", "everyone", "sync_insert", "sync, flag on"),
        Side("none", None, "by_hand_insert", "by hand, set-based"),
        1.3,
    ),
    # After the release (revision 0013): the sync always on, no flag read (issue 13), against the same statements
    # with the flag on for everyone before the release (reported: what the release saves), and against the
    # baselines of issue 7 with their targets.
    _pgbench(
        "released_update_vs_flag_on",
        "released: single-row update changing zuora_account_id: TPS / flag on for everyone before the release",
        Side("released", None, "update_zuora", "released"),
        Side("sync", "everyone", "update_zuora", "sync, flag on"),
        None,
    ),
    _pgbench(
        "released_insert_vs_flag_on",
        "released: insert of a customer with an account: TPS / flag on for everyone before the release",
        Side("released", None, "insert_account", "released"),
        Side("sync", "everyone", "insert_account", "sync, flag on"),
        None,
    ),
    _pgbench(
        "released_update_vs_app",
        "released: single-row update changing zuora_account_id: TPS / application callbacks",
        Side("released", None, "update_zuora", "released"),
        Side("app", None, "app_update_zuora", "application callbacks"),
        1.5,
    ),
    _pgbench(
        "released_insert_vs_app",
        "released: insert of a customer with an account: TPS / application callbacks",
        Side("released", None, "insert_account", "released"),
        Side("app", None, "app_insert_account", "application callbacks"),
        1.5,
    ),
    _pgbench(
        "released_unrelated_update",
        "released: single-row update of another column (email): TPS / none",
        Side("released", None, "update_unrelated", "released"),
        Side("none", None, "update_unrelated", "none"),
        0.97,
    ),
    _bulk(
        "released_bulk_update_vs_flag_on",
        "released: one UPDATE changing the account of every bulk row: time / flag on before the release",
        Side("released", None, "sync_update", "released"),
        Side("sync", "everyone", "sync_update", "sync, flag on"),
        None,
    ),
    _bulk(
        "released_bulk_insert_vs_flag_on",
        "released: one INSERT ... SELECT of bulk rows: time / flag on before the release",
        Side("released", None, "sync_insert", "released"),
        Side("sync", "everyone", "sync_insert", "sync, flag on"),
        None,
    ),
    _bulk(
        "released_bulk_update",
        "released: one UPDATE changing the account of every bulk row: time / by hand, set-based",
        Side("released", None, "sync_update", "released"),
        Side("none", None, "by_hand_update", "by hand, set-based"),
        1.5,
    ),
    _bulk(
        "released_bulk_insert",
        "released: one INSERT ... SELECT of bulk rows: time / by hand, set-based",
        Side("released", None, "sync_insert", "released"),
        Side("none", None, "by_hand_insert", "by hand, set-based"),
        1.3,
    ),
    _bulk(
        "bulk_unrelated_update",
        "one UPDATE of another column (email) of every bulk row, flag on: time / none (no target)",
        Side("sync", "everyone", "unrelated_update", "sync, flag on"),
        Side("none", None, "unrelated_update", "none"),
        None,
    ),
)
