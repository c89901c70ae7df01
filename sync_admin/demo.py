"""`sync-admin demo`: the rollout the sync exists for, on a fresh database, in one screen.

Staging-like start (customers, the flag off), testing customers (actors), a percentage, the backfill and the QA
report, everyone, an incident (the kill switch, then resume), and the rollout check: each step through the same
library calls the commands make, with the state line every command prints. It always works on its own database,
sync_admin_demo, of the embedded server, dropped and created again on every run: the demo is repeatable and can
never write to a real database.
"""

from __future__ import annotations

import os

import psycopg
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sync_admin import backfill, db, flags, migrate, release, render, reports, rollout, server, verify
from sync_admin.errors import DatabaseUnavailable

DEMO_DATABASE = "sync_admin_demo"
FLAG = flags.ACCOUNT_DATA_PERSISTENCE
ACTOR = "demo"

# The customers the portal has before the rollout: 12, on shared and own accounts, one value that is no account.
EARLY_CUSTOMERS = tuple(
    (f"customer{n:02d}@example.com", value)
    for n, value in enumerate(
        ("A-100", "A-100", "B-200", "B-200", "C-300", "D-400", "E-500", "E-500", "F-600", None, "G-700", "H-800"),
        start=1,
    )
)

# The story is meant to be read on one screen: tables are fitted to this many columns.
SCREEN_WIDTH = 100


def run(console: Console, *, url_given: bool = False) -> None:
    """Migrate a fresh demo database, then roll the flag out step by step, as the runbook does."""
    _note_ignored_url(console, url_given)
    url = _fresh_database()
    console.print(f"[bold]billing-sync demo[/] on {escape(db.mask(url))}")
    _migrate(console, url)
    with db.connect(url, autocommit=True) as conn:
        _before_the_rollout(console, conn)
        _testing_customers(console, conn)
        _percentage(console, conn)
        _everyone(console, conn)
        _writes(console, conn)
        _incident(console, conn)
        _rollout_check(console, conn)
    _release(console, url)
    with db.connect(url, autocommit=True) as conn:
        _after_the_release(console, conn)
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
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)
    console.print(
        f"[bold]1. Deploy[/]: the migrations run up to the release (db upgrade {release.PRE_RELEASE_REVISION}),"
        f" at revision {migrate.current(url)}"
    )


def _before_the_rollout(console: Console, conn: psycopg.Connection) -> None:
    console.print("[bold]2. Before the rollout[/]: the portal writes customers, the flag has no gate yet")
    for email, account in EARLY_CUSTOMERS:
        _insert(conn, email, account)
    _state(console, conn)
    console.print(f"   {_counts(conn)}")


def _testing_customers(console: Console, conn: psycopg.Connection) -> None:
    testers = [row[0] for row in conn.execute("SELECT id FROM public.customers ORDER BY id LIMIT 2")]
    console.print(f"[bold]3. Testing customers[/]: flag enable --actor {testers[0]} --actor {testers[1]}")
    flags.enable(conn, FLAG, actors=testers, actor=ACTOR, reason="QA: testing customers")
    _state(console, conn)
    _backfill_and_verify(console, conn, "testing customers")


def _percentage(console: Console, conn: psycopg.Connection) -> None:
    console.print("[bold]4. Incremental[/]: flag enable --percentage 50")
    flags.enable(conn, FLAG, percentage=50, actor=ACTOR, reason="ramp up")
    _state(console, conn)
    _backfill_and_verify(console, conn, "50 %")


def _everyone(console: Console, conn: psycopg.Connection) -> None:
    console.print("[bold]5. Everyone[/]: flag enable --everyone")
    flags.enable(conn, FLAG, everyone=True, actor=ACTOR, reason="global rollout")
    _state(console, conn)
    _backfill_and_verify(console, conn, "everyone")
    report = verify.check(conn)
    console.print("   the QA report for the rollout issue (`sync-admin verify --format markdown`), its first lines:")
    for line in reports.verify_markdown(report).splitlines()[:3]:
        console.print(f"   [dim]{escape(line)}[/]")


def _writes(console: Console, conn: psycopg.Connection) -> None:
    console.print("[bold]6. The portal writes, the triggers follow[/]  [dim](write -> the customer's membership)[/]")
    _show(console, conn, _insert(conn, "carol@example.com", "A-100"))
    _show(console, conn, _insert(conn, "dave@example.com", " A-100 "), "white space trimmed: same account")
    _show(console, conn, _set_account(conn, "carol@example.com", "Y-300"), "membership moved")
    _show(console, conn, _set_account(conn, "dave@example.com", None), "membership removed")
    _show(console, conn, _insert(conn, "gina@example.com", "not an account!"), "skipped, no error")
    console.print(f"   {_counts(conn)}")
    _print_table(console, _accounts_table(conn))
    console.print(
        "   [dim]billing accounts are only ever added by the sync, never changed or deleted:"
        " they mirror the billing system[/]"
    )


def _incident(console: Console, conn: psycopg.Connection) -> None:
    console.print("[bold]7. Incident[/]: the kill switch (flag disable), then resume")
    flags.disable(conn, FLAG, actor=ACTOR, reason="INC-1: billing errors")
    _state(console, conn)
    _show(console, conn, _set_account(conn, "carol@example.com", "Z-900"), "saved; not synced during the incident")
    flags.enable(conn, FLAG, actors=[_customer_id(conn, "carol@example.com")], actor=ACTOR, reason="INC-1: test fix")
    console.print("   flag enable --actor (to test a fix) changes the gates and keeps the kill switch pulled:")
    _state(console, conn)
    flags.resume(conn, FLAG, actor=ACTOR, reason="INC-1 resolved")
    console.print("   flag resume:")
    _state(console, conn)
    _backfill_and_verify(console, conn, "after INC-1")
    console.print(f"   carol@example.com -> {_membership(conn, 'carol@example.com')}")


def _rollout_check(console: Console, conn: psycopg.Connection) -> None:
    console.print("[bold]8. Rollout check[/]: ready to release? (it wants a day on for everyone)")
    for line in reports.checklist_lines(rollout.check(conn)):
        console.print(f"   {escape(line)}")


def _release(console: Console, url: str) -> None:
    console.print(f"[bold]9. Release[/]: db upgrade (revision {release.RELEASE_REVISION} retires the flag)")
    guard = release.GuardOptions(actor=ACTOR, reason="rollout complete")
    try:
        migrate.upgrade(url, guard=guard)
    except migrate.ReleaseRefused:
        console.print(f"   refused, the database stays at {migrate.current(url)}; what the guard says is missing:")
        with db.connect(url, autocommit=True) as conn:
            for (blocker,) in conn.execute("SELECT * FROM billing_sync.release_blockers(%s, 24)", (FLAG,)):
                console.print(f"   - [dim]{escape(blocker)}[/]")
    with db.connect(url, autocommit=True) as conn:
        _set_account(conn, "gina@example.com", None)
    console.print(
        "   gina's value set to NULL (no account); the demo cannot wait a day: db upgrade --min-hours 0"
        " (recorded with the release)"
    )
    migrate.upgrade(url, guard=release.GuardOptions(min_hours=0, actor=ACTOR, reason="rollout complete"))
    console.print(f"   at revision {migrate.current(url)}")


def _after_the_release(console: Console, conn: psycopg.Connection) -> None:
    console.print("   after the release the sync is always on; flag commands say so in one line:")
    _state(console, conn)
    _show(console, conn, _insert(conn, "hank@example.com", "H-800"), "synced, no flag read")
    try:
        flags.disable(conn, FLAG, actor=ACTOR, reason="too late")
    except release.FlagReleased as gone:
        console.print(f"   flag disable: [dim]{escape(str(gone))}[/]")
    console.print(f"   verify: {reports.verify_lines(verify.check(conn))[-1]}")


def _audit(console: Console, conn: psycopg.Connection) -> None:
    console.print(f"[bold]10. Audit history of {FLAG}[/]")
    # The flag row's changes; the actors' own rows are in `sync-admin flag history` too.
    changes = [event for event in flags.history(conn, FLAG) if event.table_name == "feature_flags"]
    events = [dict(zip(render.HISTORY_HEADERS, row, strict=True)) for row in render.history_rows(changes)]
    # Three columns fit one screen; a change without an actor (the migration's) shows its database user.
    rows = [(e["change"], e["actor"] or e["database user"], e["reason"]) for e in events]
    table = render.table(None, ("change", "by", "reason"), rows)
    # Wrap between words only: name="account_data_persistence" must not be cut in two.
    table.columns[0].min_width = max((len(word) for row in rows for word in row[0].split()), default=0)
    _print_table(console, _compact(table))


def _where_to_look(console: Console, url: str) -> None:
    console.print("[bold]11. Look yourself[/]")
    console.print(f'   psql "{escape(db.mask(url))}"')
    console.print("   sync-admin server stop    [dim]# when done: the embedded server keeps running[/]")


def _state(console: Console, conn: psycopg.Connection) -> None:
    """The state line every command prints."""
    flag = flags.current_flag(conn, FLAG)
    line = render.state_line(flag, flags.rollout_count(conn, FLAG), flags.last_kill(conn, FLAG))
    console.print(f"   {escape(FLAG)}: {escape(line)}")


def _backfill_and_verify(console: Console, conn: psycopg.Connection, reason: str) -> None:
    result = backfill.run(conn, backfill.Options(actor=ACTOR, reason=reason, settle_seconds=5), lambda _: None)
    run = result.run
    assert run is not None
    console.print(
        f"   backfill: {reports.count(run.in_rollout, 'customer', 'customers')} in the rollout,"
        f" {reports.count(run.memberships_added, 'membership', 'memberships')} added,"
        f" {reports.count(run.accounts_created, 'account', 'accounts')} created"
    )
    report = verify.check(conn)
    console.print(f"   verify: {reports.verify_lines(report)[-1]}")


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


# --- layout ---------------------------------------------------------------------------------------


def _compact(table: Table) -> Table:
    table.box = box.SIMPLE
    table.show_edge = False  # SIMPLE's edges are blank lines
    table.pad_edge = False
    return table


def _print_table(console: Console, table: Table) -> None:
    # A piped console is 200 columns wide (cli.PIPE_WIDTH): wrap long cells at one screen instead.
    console.print(table, width=min(console.width, SCREEN_WIDTH))


def _customer_id(conn: psycopg.Connection, email: str) -> int:
    row = conn.execute("SELECT id FROM public.customers WHERE email = %s", (email,)).fetchone()
    assert row is not None
    return int(row[0])


def _literal(value: str | None) -> str:
    """A value as SQL would spell it, so that white space and NULL are visible."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"
