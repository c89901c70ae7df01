"""`sync-admin demo`: the whole story of the sync on a fresh database, in one screen.

It always works on its own database, sync_admin_demo, of the embedded server, dropped and
created again on every run: the demo is repeatable and can never write to a real database.
"""

from __future__ import annotations

import os

import psycopg
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sync_admin import db, flags, migrate, render, server
from sync_admin.errors import DatabaseUnavailable

DEMO_DATABASE = "sync_admin_demo"
FLAG = flags.ACCOUNT_DATA_PERSISTENCE
ACTOR = "demo"

# The customers written before the flag is on: they stay out of the billing tables.
EARLY_CUSTOMERS = (("ann@example.com", "A-100"), ("bob@example.com", "Z-200"))

# The story is meant to be read on one screen: tables are fitted to this many columns.
SCREEN_WIDTH = 100


def run(console: Console, *, url_given: bool = False) -> None:
    """Migrate a fresh demo database, then show what the triggers do with the flag off, on, off."""
    _note_ignored_url(console, url_given)
    url = _fresh_database()
    console.print(f"[bold]billing-sync demo[/] on {escape(db.mask(url))}")
    _migrate(console, url)
    with db.connect(url, autocommit=True) as conn:
        _flag_off(console, conn)
        _turn_on(console, conn)
        _flag_on(console, conn)
        _kill_switch(console, conn)
        _audit(console, conn)
    _where_to_look(console, url)


# --- the steps ------------------------------------------------------------------------------------


def _note_ignored_url(console: Console, url_given: bool) -> None:
    # Someone used to pointing sync-admin at a real database must not think the demo wrote there.
    if url_given or os.environ.get(db.DATABASE_URL_ENV):
        console.print(
            f"[dim]--database-url/DATABASE_URL is ignored: the demo only uses {DEMO_DATABASE} on the embedded server[/]"
        )


def _fresh_database() -> str:
    """The URL of an empty sync_admin_demo database on the embedded server."""
    # server.start() hands out the billing_sync database; we only borrow its connection
    # to drop and create ours, and never write to it.
    server_url = server.start()
    try:
        return server.recreate_database(server_url, DEMO_DATABASE)
    except psycopg.Error as exc:  # recreate_database speaks plain psycopg; say what failed, in one line
        raise DatabaseUnavailable(
            f"cannot recreate {DEMO_DATABASE} on the embedded server ({db.mask(server_url)}): "
            f"{db.mask(db.first_line(exc))}"
        ) from None


def _migrate(console: Console, url: str) -> None:
    migrate.upgrade(url)
    console.print(f"[bold]1. Migrate[/] (alembic upgrade head): at revision {migrate.current(url)}")


def _flag_off(console: Console, conn: psycopg.Connection) -> None:
    console.print(f"[bold]2. Write customers while {FLAG} is off[/]")
    for email, account in EARLY_CUSTOMERS:
        _insert(conn, email, account)
    names = ", ".join(f"{email} {_literal(account)}" for email, account in EARLY_CUSTOMERS)
    console.print(f"   inserted {names}")
    console.print(f"   {_counts(conn)}")


def _turn_on(console: Console, conn: psycopg.Connection) -> None:
    change = _switch_sync(conn, True, "demo: start syncing")
    was = f"{render.on_off(change.before.enabled)}, {change.before.gates}"
    console.print(f"[bold]3. Turn {FLAG} on for everyone[/] (was {was}), by {ACTOR}")


def _flag_on(console: Console, conn: psycopg.Connection) -> None:
    console.print(f"[bold]4. Write customers while {FLAG} is on[/]  [dim](write -> the customer's membership)[/]")
    _show(console, conn, _insert(conn, "carol@example.com", "A-100"))
    _show(console, conn, _insert(conn, "dave@example.com", " A-100 "), "white space trimmed: same account")
    _show(console, conn, _insert(conn, "erin@example.com", "Z-200"))
    _show(console, conn, _set_account(conn, "erin@example.com", "Y-300"), "membership moved")
    _show(console, conn, _insert(conn, "frank@example.com", "F-500"))
    _show(console, conn, _set_account(conn, "frank@example.com", None), "membership removed")
    _show(console, conn, _insert(conn, "gina@example.com", "not an account!"), "skipped, no error")
    _print_table(console, _side_by_side(_accounts_table(conn), _memberships_table(conn)))
    console.print("   [dim]accounts are never deleted: Z-200 and F-500 stay, without members[/]")
    console.print(
        "   [dim]ann and bob, written while the flag was off: their next account change or `sync-admin backfill`[/]"
    )


def _kill_switch(console: Console, conn: psycopg.Connection) -> None:
    change = _switch_sync(conn, False, "demo: kill switch")
    was = render.on_off(change.before.enabled)
    console.print(
        f"[bold]5. Kill switch: {FLAG} off for every customer[/] (was {was}; gates kept: {change.after.gates})"
    )
    before = _counts(conn)
    _show(console, conn, _set_account(conn, "carol@example.com", "Y-300"), "saved; sync stopped")
    stored = conn.execute(
        "SELECT zuora_account_id FROM public.customers WHERE email = %s", ("carol@example.com",)
    ).fetchone()
    console.print(f"   customers.zuora_account_id is now {_literal(stored[0] if stored else None)}")
    after = _counts(conn)
    console.print(f"   {after}" + (" (unchanged)" if after == before else f" (was: {before})"))


def _audit(console: Console, conn: psycopg.Connection) -> None:
    console.print(f"[bold]6. Audit history of {FLAG}[/]")
    events = [
        dict(zip(render.HISTORY_HEADERS, row, strict=True)) for row in render.history_rows(flags.history(conn, FLAG))
    ]
    # Four columns fit one screen; a change without an actor (the migration's) shows its database user.
    rows = [(e["when"], e["change"], e["actor"] or e["database user"], e["reason"]) for e in events]
    table = render.table(None, ("when", "change", "by", "reason"), rows)
    table.columns[0].no_wrap = True
    # Wrap between words only: name="account_data_persistence" must not be cut in two.
    table.columns[1].min_width = max((len(word) for row in rows for word in row[1].split()), default=0)
    _print_table(console, _compact(table))


def _where_to_look(console: Console, url: str) -> None:
    console.print("[bold]7. Look yourself[/]")
    console.print(f'   psql "{escape(db.mask(url))}"')
    console.print("   sync-admin server stop    [dim]# when done: the embedded server keeps running[/]")


# --- the flag -------------------------------------------------------------------------------------


def _switch_sync(conn: psycopg.Connection, on: bool, reason: str) -> flags.FlagChange:
    """The demo's only flag switch: on for everyone (the everyone gate), or the kill switch.

    The story is about what the triggers do, so every customer is in the rollout; the actor
    and percentage gates are `sync-admin flag enable --actor/--percentage`.
    """
    if on:
        return flags.enable(conn, FLAG, everyone=True, actor=ACTOR, reason=reason)
    return flags.disable(conn, FLAG, actor=ACTOR, reason=reason)  # no gate named: the kill switch


# --- customer writes, as the application would do them -------------------------------------------


def _insert(conn: psycopg.Connection, email: str, account: str | None) -> tuple[str, str]:
    conn.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES (%s, %s)", (email, account))
    return email, f"insert {_literal(account)}"


def _set_account(conn: psycopg.Connection, email: str, account: str | None) -> tuple[str, str]:
    old = conn.execute("SELECT zuora_account_id FROM public.customers WHERE email = %s", (email,)).fetchone()
    conn.execute("UPDATE public.customers SET zuora_account_id = %s WHERE email = %s", (account, email))
    return email, f"update {_literal(old[0] if old else None)} -> {_literal(account)}"


def _show(console: Console, conn: psycopg.Connection, write: tuple[str, str], note: str = "") -> None:
    """One write per line, with the membership the triggers left: evidence, not a claim."""
    email, action = write
    line = f"   {email:<18} {action:<26} -> {_membership(conn, email) or 'no membership'}"
    console.print(escape(line) + (f"  [dim]({escape(note)})[/]" if note else ""))


# --- reading the billing tables ------------------------------------------------------------------


def _membership(conn: psycopg.Connection, email: str) -> str | None:
    row = conn.execute(
        """
        SELECT string_agg(a.zuora_account_id, ', ' ORDER BY a.zuora_account_id)
        FROM public.customers c
        JOIN public.billing_account_memberships m ON m.customer_id = c.id
        JOIN public.billing_accounts a ON a.id = m.billing_account_id
        WHERE c.email = %s
        """,
        (email,),
    ).fetchone()
    return row[0] if row else None


def _counts(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM public.customers),"
        " (SELECT count(*) FROM public.billing_accounts),"
        " (SELECT count(*) FROM public.billing_account_memberships)"
    ).fetchone()
    customers, accounts, memberships = row or (0, 0, 0)
    return f"customers: {customers}, billing_accounts: {accounts}, billing_account_memberships: {memberships}"


def _accounts_table(conn: psycopg.Connection) -> Table:
    rows = conn.execute(
        """
        SELECT a.zuora_account_id, count(m.id)
        FROM public.billing_accounts a
        LEFT JOIN public.billing_account_memberships m ON m.billing_account_id = a.id
        GROUP BY a.id ORDER BY a.id
        """
    ).fetchall()
    return _compact(render.table("billing_accounts", ("account", "members"), rows))


def _memberships_table(conn: psycopg.Connection) -> Table:
    rows = conn.execute(
        """
        SELECT c.email, a.zuora_account_id
        FROM public.billing_account_memberships m
        JOIN public.customers c ON c.id = m.customer_id
        JOIN public.billing_accounts a ON a.id = m.billing_account_id
        ORDER BY m.id
        """
    ).fetchall()
    return _compact(render.table("billing_account_memberships", ("customer", "account"), rows))


# --- layout ---------------------------------------------------------------------------------------


def _compact(table: Table) -> Table:
    table.box = box.SIMPLE
    table.show_edge = False  # SIMPLE's edges are blank lines
    table.pad_edge = False
    return table


def _print_table(console: Console, table: Table) -> None:
    # A piped console is 200 columns wide (cli.PIPE_WIDTH): wrap long cells at one screen instead.
    console.print(table, width=min(console.width, SCREEN_WIDTH))


def _side_by_side(*tables: Table) -> Table:
    # Two short tables next to each other keep the story on one screen.
    grid = Table.grid(padding=(0, 3))
    grid.add_row(*tables)
    return grid


def _literal(value: str | None) -> str:
    """A value as SQL would spell it, so that white space and NULL are visible."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"
