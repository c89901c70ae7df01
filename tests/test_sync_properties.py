"""Property: after any sequence of customer writes and flag flips, the billing tables are exactly
what a small Python model of the issue's semantics says.

The model: a customer's membership is re-derived from its zuora_account_id whenever a write
reaches the sync while the flag is on (an insert with a value; an update that changes the raw
value); otherwise it stays as it was. Deletes cascade; an id change carries the membership;
accounts are only ever added.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from helpers import accounts, flag_off, flag_on, memberships
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
VALUES = ["A1", " A1 ", "B2", "", "  ", None, "bad value", "x" * 65, "\t C3\n", "x" * 64, "\x0bD4\x0c", "\u00dcn\u00ef"]


def derive(raw: str | None) -> str | None:
    if raw is None:
        return None
    trimmed = raw.strip(" \t\n\r\x0b\x0c")
    return trimmed if ACCOUNT.fullmatch(trimmed) else None


@dataclass
class Model:
    flag: bool = False
    raw: dict[int, str | None] = field(default_factory=dict)
    member: dict[int, str | None] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)
    next_manual_id: int = -1

    def sync(self, customer: int, value: str | None) -> None:
        account = derive(value)
        self.member[customer] = account
        if account is not None:
            self.accounts.add(account)

    def pick(self, index: int) -> int | None:
        ids = sorted(self.raw)
        return ids[index % len(ids)] if ids else None

    def memberships(self) -> set[tuple[int, str]]:
        return {(customer, account) for customer, account in self.member.items() if account is not None}


values = st.sampled_from(VALUES)
indexes = st.integers(min_value=0, max_value=99)
operations = st.one_of(
    st.tuples(st.just("insert"), st.lists(values, min_size=1, max_size=3)),
    st.tuples(st.just("update"), indexes, values),
    st.tuples(st.just("update_all"), values),
    st.tuples(st.just("touch"), indexes),
    st.tuples(st.just("delete"), indexes),
    st.tuples(st.just("change_id"), indexes),
    st.tuples(st.just("flag"), st.booleans()),
)


def apply(conn: psycopg.Connection, admin: psycopg.Connection, model: Model, operation: tuple) -> None:
    kind, *args = operation
    if kind == "flag":
        (model.flag,) = args
        (flag_on if model.flag else flag_off)(admin)  # another session flips it
    elif kind == "insert":
        (new_values,) = args
        rows = conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id)"
            " SELECT 'c@example.com', v FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n RETURNING id",
            (new_values,),
        ).fetchall()
        for (customer,), value in zip(rows, new_values, strict=True):
            model.raw[customer] = value
            model.member[customer] = None
            if model.flag and value is not None:
                model.sync(customer, value)
    elif kind in ("update", "update_all"):
        value = args[-1]
        targets = list(model.raw) if kind == "update_all" else [model.pick(args[0])]
        if targets == [None]:
            return
        conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE id = ANY(%s)", (value, targets))
        for customer in targets:
            if model.flag and model.raw[customer] != value:
                model.sync(customer, value)
            model.raw[customer] = value
    elif kind == "touch":  # an unrelated column, and the account column set to itself
        customer = model.pick(args[0])
        conn.execute(
            "UPDATE public.customers SET email = email || 'x', zuora_account_id = zuora_account_id WHERE id = %s",
            (customer,),
        )
    elif kind == "delete":
        customer = model.pick(args[0])
        conn.execute("DELETE FROM public.customers WHERE id = %s", (customer,))
        model.raw.pop(customer, None)
        model.member.pop(customer, None)
    elif kind == "change_id":
        customer = model.pick(args[0])
        if customer is None:
            return
        new_id, model.next_manual_id = model.next_manual_id, model.next_manual_id - 1
        conn.execute("UPDATE public.customers SET id = %s WHERE id = %s", (new_id, customer))
        model.raw[new_id] = model.raw.pop(customer)
        model.member[new_id] = model.member.pop(customer)


@pytest.fixture
def admin(connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    """The session that flips the flag, shared by every example of the test."""
    return connect()


@pytest.mark.slow(11)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operations, min_size=1, max_size=25))
def test_billing_tables_always_equal_the_model(conn, admin, steps):
    # each example starts from an empty state with the flag off
    conn.execute(
        "TRUNCATE public.billing_account_memberships, public.billing_accounts, public.customers RESTART IDENTITY"
    )
    flag_off(admin)
    model = Model()
    for step, operation in enumerate(steps):
        apply(conn, admin, model, operation)
        where = f"after step {step}: {operation!r}"
        assert memberships(conn) == model.memberships(), where
        assert accounts(conn) == model.accounts, where
        assert dict(conn.execute("SELECT id, zuora_account_id FROM public.customers").fetchall()) == model.raw, where
