"""Shared by the backfill, verify and rollout-check tests: customers, gates, and the expected state.

The expected state is computed here in Python, independently of the SQL under test: the account
rule re-implemented, and the rollout asked of billing_sync.flag_enabled_for (the function the
triggers call), customer by customer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import psycopg
from helpers import FLAG

ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
BLANKS = " \t\n\r\x0b\x0c"

# Raw values a customer may carry: shared and unique accounts, white space to trim, and values that
# are not accounts (skipped by the sync) or blank (no account).
SHARED = [f"S{i}" for i in range(7)]
ODD_VALUES = [None, "", "  ", " \tS3\n", "not an account", "x" * 65, "ü1", "A.b-c_9", "s0"]


def derive(raw: str | None) -> str | None:
    """The account a raw value stands for (the issue's rule), or None."""
    if raw is None:
        return None
    trimmed = raw.strip(BLANKS)
    return trimmed if ACCOUNT.fullmatch(trimmed) else None


def is_skip(raw: str | None) -> bool:
    """Not blank, yet not an account: what the drift check reports as a sync skip."""
    return raw is not None and raw.strip(BLANKS) != "" and derive(raw) is None


def mixed_values(count: int, seed: int = 1) -> list[str | None]:
    rng = random.Random(seed)
    values: list[str | None] = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.5:
            values.append(rng.choice(SHARED))
        elif roll < 0.9:
            values.append(f"U{i}")
        else:
            values.append(rng.choice(ODD_VALUES))
    return values


def add_customers(conn: psycopg.Connection, values: Sequence[str | None]) -> list[int]:
    """Insert one customer per value, in order; their ids."""
    rows = conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c' || n || '@example.com', v FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n)"
        " ORDER BY n RETURNING id",
        (list(values),),
    ).fetchall()
    return [row[0] for row in rows]


def set_gates(conn: psycopg.Connection, *, enabled=True, everyone=False, percentage=0, actors=()) -> None:
    conn.execute(
        "UPDATE billing_sync.feature_flags SET enabled = %s, everyone = %s, percentage = %s WHERE name = %s",
        (enabled, everyone, percentage, FLAG),
    )
    conn.execute("DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = %s", (FLAG,))
    for customer_id in actors:
        conn.execute(
            "INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, %s)", (FLAG, customer_id)
        )


def rollout_ids(conn: psycopg.Connection) -> set[int]:
    rows = conn.execute("SELECT id FROM public.customers WHERE billing_sync.flag_enabled_for(%s, id)", (FLAG,))
    return {row[0] for row in rows}


def expected_memberships(conn: psycopg.Connection) -> set[tuple[int, str]]:
    """{(customer_id, account)} the sync must leave for the customers in the rollout."""
    inside = rollout_ids(conn)
    rows = conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall()
    return {(cid, derive(raw)) for cid, raw in rows if cid in inside and derive(raw) is not None}


def memberships_of(conn: psycopg.Connection, ids: set[int]) -> set[tuple[int, str]]:
    rows = conn.execute(
        "SELECT m.customer_id, a.zuora_account_id FROM public.billing_account_memberships m"
        " JOIN public.billing_accounts a ON a.id = m.billing_account_id WHERE m.customer_id = ANY(%s)",
        (list(ids),),
    ).fetchall()
    return set(rows)


def billing_snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every billing row with its physical identity (xmin, ctid): any rewrite shows."""
    return {
        "accounts": conn.execute(
            "SELECT id, zuora_account_id, created_at, updated_at, xmin::text, ctid::text"
            " FROM public.billing_accounts ORDER BY id"
        ).fetchall(),
        "memberships": conn.execute(
            "SELECT id, billing_account_id, customer_id, created_at, updated_at, xmin::text, ctid::text"
            " FROM public.billing_account_memberships ORDER BY id"
        ).fetchall(),
    }


def runs(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT id, status, last_id, scanned, total, batches FROM billing_sync.backfill_runs ORDER BY id"
    ).fetchall()
