"""Every command and SQL statement in the docs runs: the docs cannot drift from the code.

The fenced blocks of README.md and docs/*.md, by their info-string:

* ```sh: run by bash (errexit, pipefail) in a temporary directory, with DATABASE_URL set to this test's
  database (a clone of the migrated template, revision 0012, the flag off) and the project's `sync-admin`
  and the server's `psql` first on PATH;
* ```sql: run through psycopg on this test's database, autocommit (a block's own BEGIN ... COMMIT holds);
* ```toml: read as a sync-admin configuration (`sync-admin rollout envs`), which refuses an unknown key;
* ```sh no-run: not run (the text next to the block says why); its `sync-admin` lines are still parsed by the
  CLI, so a renamed command or option fails here. Other languages (text, markdown, none) are output, not input.

Modifiers after the language: `setup=NAME` puts the database in the state the page's narrative needs first
(SETUPS below; `setup=empty_db` runs the block on a new, never migrated database); `rollback` runs a SQL block
in one transaction and rolls it back (roles are cluster-wide: other tests and workers share them).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg
import pytest
from pgtools import fresh_database, pg_program, server_major
from test_release import days_pass

from sync_admin import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
RUN = {"sh", "sql", "toml"}
NOT_INPUT = {"", "text", "markdown"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    options: frozenset[str]
    body: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def option(self, name: str) -> str | None:
        for option in self.options:
            if option.startswith(name + "="):
                return option.split("=", 1)[1]
        return None


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            lang, *options = match["info"].split() or [""]
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, lang, frozenset(options), match["body"]))
    return found


BLOCKS = blocks()
RUNNABLE = [block for block in BLOCKS if block.lang in RUN and "no-run" not in block.options]
NO_RUN = [block for block in BLOCKS if "no-run" in block.options]


def rollout_complete(conn: psycopg.Connection, db_url: str) -> str:
    """On for everyone for more than the 24 h verification period, no drift, no skips: ready to release."""
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, everyone = true")
    days_pass(conn, 25)
    return db_url


def customers(conn: psycopg.Connection, db_url: str) -> str:
    """Customers 101 and 102 (the runbook's testing customers) and a few more, with accounts, written before the
    flag was switched on: the backfill has work to do."""
    conn.execute(
        "INSERT INTO public.customers (id, email, zuora_account_id)"
        " SELECT g, 'c' || g || '@example.com', 'A' || (g % 3) FROM generate_series(101, 110) AS g"
    )
    return db_url


SETUPS: dict[str, Callable[[psycopg.Connection, str], str]] = {
    "customers": customers,
    "rollout_complete": rollout_complete,
}


def sync_admin_lines(body: str) -> list[list[str]]:
    """The argv of every `sync-admin` command in a shell block (after `&&`, `|`, `;` too), comments dropped."""
    commands = []
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, ";"]:
            if word in {"&&", "||", "|", ";", ">", "<"} or word.endswith(">"):
                if command[:1] == ["sync-admin"]:
                    commands.append(command[1:])
                command = []
            else:
                command.append(word)
    return commands


def parse_only(argv: list[str]) -> None:
    """Parse argv with sync-admin's click commands, group by group, running none of them."""
    command: click.Command = cli.cli
    ctx = command.make_context("sync-admin", list(argv))
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # Click 8.2 deprecates protected_args; Click 9 puts them in args
            warnings.simplefilter("ignore", DeprecationWarning)
            remaining = [*getattr(ctx, "protected_args", []), *ctx.args]
        if not remaining:
            return
        name, *rest = remaining
        sub = command.get_command(ctx, name)
        assert sub is not None, f"sync-admin has no command {name!r}"
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)


def test_the_docs_have_blocks_to_run_and_no_unknown_kind():
    assert len(RUNNABLE) >= 5
    unknown = [block.id for block in BLOCKS if block.lang not in RUN | NOT_INPUT]
    assert not unknown, f"fenced blocks of no known kind (sh, sql, toml, text, markdown): {unknown}"
    bad = [
        block.id
        for block in BLOCKS
        for option in block.options
        if option.split("=")[0] not in {"no-run", "setup", "rollback"}
    ]
    assert not bad, f"unknown info-string options: {bad}"
    unknown_setups = [
        block.id
        for block in BLOCKS
        if block.option("setup") and block.option("setup") not in SETUPS | {"empty_db": None}
    ]
    assert not unknown_setups


@pytest.mark.parametrize("block", NO_RUN, ids=lambda block: block.id)
def test_a_block_that_is_not_run_still_names_real_commands_and_options(block):
    for argv in sync_admin_lines(block.body):
        parse_only(argv)


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_the_block_runs(block, conn, db_url, tmp_path):
    setup = block.option("setup")
    if setup == "empty_db":
        with fresh_database(conn, db_url) as url:
            run(block, conn, url, tmp_path)
        return
    if setup:
        db_url = SETUPS[setup](conn, db_url)
    run(block, conn, db_url, tmp_path)


def run(block: Block, conn: psycopg.Connection, url: str, tmp_path: Path) -> None:
    if block.lang == "sql":
        with psycopg.connect(url, autocommit="rollback" not in block.options) as session:
            session.execute(block.body)
            if "rollback" in block.options:
                session.rollback()
        return
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [
                str(Path(sys.executable).parent),
                str(Path(pg_program("psql", server_major(conn))).parent),
                os.environ["PATH"],
            ]
        ),
        "DATABASE_URL": url,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SYNC_ADMIN_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("SYNC_ADMIN_CONFIG", None)
    if block.lang == "toml":
        (tmp_path / "sync-admin.toml").write_text(block.body, encoding="utf-8")
        script = "sync-admin rollout envs"
    else:
        script = block.body
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (
        f"{block.id} exited {done.returncode}\n{script}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
