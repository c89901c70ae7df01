"""Ctrl-C at any moment of a command ends in one line and exit 130 (or the command's own line), never in a
traceback, an "internal error" or a half-loaded module (sync_admin/interrupts.py).

Each case runs the real executable's entry point in a process of its own (signal handlers belong to a process's main
thread) and sends it SIGINT from inside, at a chosen point: while a given module is being imported, while a module
the CLI loads lazily is executing, after the command has finished. Timed signals from outside would land at random
points; these land where the bug classes are, every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENTRY = "from sync_admin.interrupts import main\nmain()\n"
# SIGINT to itself when the import of a module named by $INTERRUPT_IMPORT begins (once).
INTERRUPT_ON_IMPORT = textwrap.dedent(
    """
    import os, signal, sys

    class InterruptOnImport:
        fired = False

        def find_spec(self, name, path=None, target=None):
            if name == os.environ["INTERRUPT_IMPORT"] and not InterruptOnImport.fired:
                InterruptOnImport.fired = True
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, InterruptOnImport())
    """
)


def run_entry(prelude: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = prelude + f"sys.argv = ['sync-admin', *{list(args)!r}]\n" + ENTRY
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_aborted(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 130, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] in ("aborted",) or done.stderr.strip().splitlines()[-1].startswith(
        "error: interrupted"
    ), done.stderr[-2000:]


@pytest.mark.parametrize(
    "module",
    [
        "sync_admin.cli",  # the executable's own start
        "psycopg",  # a command's first connection
        "getpass",  # inside a lazily loaded module of ours (flags, on first use)
        "sync_admin.manifest",  # the same (schema)
        "rich.table",  # the report being printed
        "rich.console",
    ],
)
def test_a_ctrl_c_while_a_module_is_imported_ends_in_one_line(db_url, module):
    done = run_entry(INTERRUPT_ON_IMPORT, "--database-url", db_url, "verify", env={"INTERRUPT_IMPORT": module})
    assert_aborted(done)


def test_a_ctrl_c_while_a_lazy_module_executes_leaves_it_whole(tmp_path: Path):
    """The bug this catches: LazyLoader keeps a module an interrupt cut short in sys.modules, half-initialised; the
    command's interrupt handling then used it and failed with "internal error: AttributeError"."""
    (tmp_path / "interrupted_on_load.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(100000):\n    pass\nLOADED = True\n"
    )
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from sync_admin import cli
        module = cli._lazy("interrupted_on_load")
        try:
            module.LOADED
        except KeyboardInterrupt:
            print("interrupted after the load")
        print("loaded:", getattr(module, "LOADED", False))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["interrupted after the load", "loaded: True"]


def test_a_ctrl_c_before_the_command_changes_nothing(conn, db_url):
    """Interrupted while loading what it needs, a backfill has not started: no run is recorded."""
    done = run_entry(INTERRUPT_ON_IMPORT, "--database-url", db_url, "backfill", env={"INTERRUPT_IMPORT": "getpass"})
    assert_aborted(done)
    assert conn.execute("SELECT count(*) FROM billing_sync.backfill_runs").fetchone()[0] == 0


def test_a_ctrl_c_after_the_command_has_finished_does_not_change_its_exit_status(db_url):
    """The command said it succeeded: a Ctrl-C while the interpreter shuts down (here: from an exit handler) must
    not turn its exit status into "interrupted"."""
    prelude = "import atexit, os, signal\natexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
    done = run_entry(prelude, "--database-url", db_url, "verify")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert done.stdout.strip().splitlines()[-1].startswith("no drift"), done.stdout
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


def test_the_console_script_is_the_interrupt_safe_entry_point():
    """pyproject.toml's script goes through interrupts.main (the CLI's own main has no start-up protection)."""
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'sync-admin = "sync_admin.interrupts:main"' in pyproject
