"""The databases the suite creates: two templates with the same schema and data, and clones of them.

* `<prefix>_tpl_sync`: migrated to head (plus a design from bench/designs, if one is chosen), with data;
* `<prefix>_tpl_none`: a copy of it without the sync's triggers on customers ("none");
* `<prefix>_tpl_released`: a copy of it after the release (revision 0013: the sync always on, no flag);
* clones of those for the pgbench runs (`sync`, `none`, `app` for the application callbacks) and one
  fresh clone for every timed bulk statement, so that every bulk statement starts from the same state.

Data: `customers` customers, customer g on account A<(g+1)/2> (two per account) and a member of it;
accounts A1..A<accounts> and B<new_accounts+1>..B<accounts> exist (the B accounts are the targets of
the bulk statements, of which the first new_accounts are still to be created).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg import sql

from bench.suite.config import Settings
from bench.suite.cpu import ServerCpu
from sync_admin import db, migrate, release, server

FLAG = "account_data_persistence"
FLAG_MODES = {
    "off": "UPDATE billing_sync.feature_flags SET enabled = false, everyone = false, percentage = 0 WHERE name = %s",
    "everyone": "UPDATE billing_sync.feature_flags SET enabled = true, everyone = true, percentage = 0 WHERE name = %s",
    "50%": "UPDATE billing_sync.feature_flags SET enabled = true, everyone = false, percentage = 50 WHERE name = %s",
}

# The sync's triggers on customers, by name (head: insert, update, skips; designs keep the prefix).
SYNC_TRIGGERS = """
SELECT t.tgname FROM pg_catalog.pg_trigger t
WHERE t.tgrelid = 'public.customers'::pg_catalog.regclass AND NOT t.tgisinternal
  AND t.tgname LIKE 'billing\\_sync\\_%'
ORDER BY t.tgname
"""

LOAD = (
    "INSERT INTO public.billing_accounts (zuora_account_id) SELECT 'A' || g FROM generate_series(1, %(accounts)s) g",
    "INSERT INTO public.billing_accounts (zuora_account_id)"
    " SELECT 'B' || g FROM generate_series(%(new_accounts)s + 1, %(accounts)s) g",
    "INSERT INTO public.customers (email, first_name, last_name, company, zuora_account_id)"
    " SELECT 'c' || g || '@example.com', 'First' || g, 'Last' || g, 'Company ' || (g %% 1000),"
    " 'A' || ((g + 1) / 2) FROM generate_series(1, %(customers)s) g",
    "INSERT INTO public.billing_account_memberships (billing_account_id, customer_id)"
    " SELECT a.id, c.id FROM public.customers c"
    " JOIN public.billing_accounts a ON a.zuora_account_id = c.zuora_account_id ORDER BY c.id",
)


class Server:
    """The server the suite creates its databases on (the embedded one unless a URL is given)."""

    def __init__(self, settings: Settings) -> None:
        given = db.resolve_url(settings.database_url)
        self.base = given or server.start()
        self.cpu = ServerCpu(None if given else server.data_dir())
        self.prefix = settings.prefix
        self.synchronous_commit = settings.synchronous_commit

    def name(self, role: str) -> str:
        return f"{self.prefix}_{role}"

    def url(self, role: str) -> str:
        return db.with_database(self.base, self.name(role))

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.base, autocommit=True)

    def drop(self, role: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name(role))))

    def create(self, role: str, template: str | None = None) -> str:
        """A fresh database ROLE, empty or a file copy of the template database TEMPLATE; its URL.

        Its sessions run with the suite's synchronous_commit (a per-database setting is not copied).
        """
        self.drop(role)
        name = sql.Identifier(self.name(role))
        statement = sql.SQL("CREATE DATABASE {}").format(name)
        if template is not None:
            statement += sql.SQL(" TEMPLATE {} STRATEGY = FILE_COPY").format(sql.Identifier(self.name(template)))
        with self.admin() as conn:
            conn.execute(statement)
            setting = sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}")
            conn.execute(setting.format(name, sql.Literal(self.synchronous_commit)))
        return self.url(role)

    def has(self, role: str) -> bool:
        """Whether the database ROLE exists (tpl_released is built only for head, not for a design)."""
        with self.admin() as conn:
            found = conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (self.name(role),))
            return found.fetchone() is not None

    @contextmanager
    def clone(self, role: str, template: str) -> Iterator[str]:
        """A throw-away copy of TEMPLATE for the duration of the block."""
        url = self.create(role, template)
        try:
            yield url
        finally:
            self.drop(role)


def build_templates(srv: Server, settings: Settings) -> None:
    """`tpl_sync` (migrated, design installed, data loaded) and `tpl_none` (the same without the triggers)."""
    url = srv.create("tpl_sync")
    migrate.upgrade(url, release.PRE_RELEASE_REVISION)
    with psycopg.connect(url, autocommit=True) as conn:
        install_design(conn, settings.design_dir())
        set_flag(conn, "off")
        params = {"accounts": settings.accounts, "new_accounts": settings.new_accounts, "customers": settings.customers}
        for statement in LOAD:
            conn.execute(statement, params)
        conn.execute("VACUUM (FREEZE, ANALYZE)")
    url = srv.create("tpl_none", "tpl_sync")
    with psycopg.connect(url, autocommit=True) as conn:
        drop_sync_triggers(conn)
        checkpoint(conn)
    if settings.design_dir() is None:
        build_released(srv)


def build_released(srv: Server) -> None:
    """`tpl_released`: tpl_sync after the release (revision 0013: the sync always on, no flag read). The data is
    the same and in sync; the release runs with the guard overridden (the benchmark has no day to wait), which
    its audit record says."""
    url = srv.create("tpl_released", "tpl_sync")
    with psycopg.connect(url, autocommit=True) as conn:
        set_flag(conn, "everyone")
    guard = release.GuardOptions(override="benchmark: the same data as tpl_sync", actor="bench", reason="bench")
    migrate.upgrade(url, guard=guard)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        checkpoint(conn)


def checkpoint(conn: psycopg.Connection) -> None:
    """CHECKPOINT, so that no timed statement pays for a pending one; skipped without the right to it
    (superuser or pg_checkpoint) on a --database-url server."""
    with suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("CHECKPOINT")


def sync_triggers(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute(SYNC_TRIGGERS).fetchall()]


def drop_sync_triggers(conn: psycopg.Connection) -> None:
    for name in sync_triggers(conn):
        conn.execute(sql.SQL("DROP TRIGGER {} ON public.customers").format(sql.Identifier(name)))


def install_design(conn: psycopg.Connection, directory: Path | None) -> None:
    """Replace head's sync triggers by the design's: its install.txt lists its SQL files in order."""
    if directory is None:
        return
    drop_sync_triggers(conn)
    # Head's kill switch mirror (revision 0006) is what the mirror designs install again.
    conn.execute("DROP TRIGGER IF EXISTS billing_sync_sync_switch ON billing_sync.feature_flags")
    for relative in design_files(directory):
        conn.execute((directory / relative).read_text(encoding="utf-8"))


def design_files(directory: Path) -> list[str]:
    """The files named by DIRECTORY/install.txt (one per line; blank lines and # comments ignored)."""
    listing = (directory / "install.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in listing if line.strip() and not line.lstrip().startswith("#")]


def set_flag(conn: psycopg.Connection, mode: str) -> None:
    conn.execute(FLAG_MODES[mode], (FLAG,))


def server_facts(conn: psycopg.Connection) -> dict[str, str]:
    """PostgreSQL version and the settings that matter for the figures."""
    facts = {"postgresql": conn.execute("SELECT pg_catalog.version()").fetchone()[0]}
    for name in ("shared_buffers", "work_mem", "max_locks_per_transaction", "fsync", "jit"):
        facts[name] = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
    return facts
