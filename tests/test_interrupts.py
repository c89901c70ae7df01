"""Ctrl-C at any moment of a command ends in one line and exit 130 (or the command's own line), never in a
traceback, an "internal error" or a half-loaded module (sync_admin/interrupts.py).

Each case runs the real executable's entry point in a process of its own (signal handlers belong to a process's main
thread) and sends it SIGINT from inside, at a chosen point: while a given module is being imported, while a module
the CLI loads lazily is executing, after the command has finished. Timed signals from outside would land at random
points; these land where the bug classes are, every run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from sync_admin import migrate

ENTRY = "from sync_admin.interrupts import main\nmain()\n"
# A signal to itself ($INTERRUPT_SIGNAL, SIGINT by default) when the import of the module named by $INTERRUPT_IMPORT
# begins (once).
INTERRUPT_ON_IMPORT = textwrap.dedent(
    """
    import os, signal, sys

    class InterruptOnImport:
        fired = False

        def find_spec(self, name, path=None, target=None):
            if name == os.environ["INTERRUPT_IMPORT"] and not InterruptOnImport.fired:
                InterruptOnImport.fired = True
                os.kill(os.getpid(), getattr(signal, os.environ.get("INTERRUPT_SIGNAL", "SIGINT")))
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
    """Exit 130 and one line: "aborted", or the backfill's own "interrupted; ... saved"."""
    assert done.returncode == 130, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0] == "aborted" or lines[0].startswith("error: interrupted; run #"), done.stderr[-2000:]


@pytest.mark.parametrize(
    "module",
    [
        "sync_admin.cli",  # the executable's own start
        "psycopg",  # a command's first connection
        "sync_admin.flags",  # a module the CLI loads on first use, at the start of its import
        "sync_admin.terminal",  # the same, loaded by the first line printed
        "getpass",  # inside such a module (flags)
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


def test_a_second_ctrl_c_while_a_failed_command_prints_its_line_changes_neither_the_line_nor_the_exit_status():
    """Bad input: the error line (which loads rich) is printed whole, alone, and the exit status stays 2."""
    done = run_entry(INTERRUPT_ON_IMPORT, "backfill", "--batch-size", "0", env={"INTERRUPT_IMPORT": "rich.console"})
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--batch-size'"), done.stderr


@pytest.mark.parametrize("service", [["heal"], ["watch"]])
def test_sigterm_while_a_service_loads_what_it_prints_stops_it_with_its_line(db_url, service):
    """A service turns SIGTERM into a stop (watch.sigterm_stops); one landing while its first line loads rich is held
    back until the import is whole, then stops it as usual: its "stopped" line, exit 0."""
    env = {"INTERRUPT_IMPORT": "rich.console", "INTERRUPT_SIGNAL": "SIGTERM"}
    done = run_entry(INTERRUPT_ON_IMPORT, "--database-url", db_url, *service, env=env)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert "stopped;" in done.stdout.strip().splitlines()[-1], done.stdout


def test_python_dash_m_goes_through_the_same_entry_point(db_url):
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + INTERRUPT_ON_IMPORT + "import runpy\n"
         f"sys.argv = ['sync_admin', '--database-url', {db_url!r}, 'verify']\n"
         "runpy.run_module('sync_admin', run_name='__main__')\n"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "INTERRUPT_IMPORT": "sync_admin.flags"},
    )  # fmt: skip
    assert_aborted(done)


def test_a_ctrl_c_during_db_upgrade_says_which_revision_the_database_is_at(db_url):
    """An SRE stops an upgrade that waits behind a long transaction: one line says where the database stands (the
    revisions before the one in flight are committed, that one rolled back) and the database is exactly there."""
    migrate.downgrade(db_url, "0006")
    holder = psycopg.connect(db_url)
    observer = psycopg.connect(db_url, autocommit=True)
    try:
        holder.execute("LOCK TABLE public.customers IN ROW EXCLUSIVE MODE")  # what an open customer write holds
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_admin", "--database-url", db_url, "db", "upgrade", "0012"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not observer.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.customers'::regclass AND NOT granted)"
        ).fetchone()[0]:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        holder.close()
    lines = [line for line in err.splitlines() if line.strip() and "not granted within" not in line]
    assert process.returncode == 130, err
    assert lines == [
        "error: interrupted; the database is at revision 0006: each revision commits on its own, the one in flight"
        " was rolled back; run the command again to go on"
    ], err
    assert migrate.current(db_url) == "0006"
    observer.close()


SWAP_RACE = textwrap.dedent(
    """
    import _signal, os, signal, sys, types
    from sync_admin import interrupts

    def stop(signum, frame):  # watch.sigterm_stops's handler
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    case, calls = sys.argv[1], []

    def signal_with_a_stop_in_between(signum, handler):
        calls.append(signum)
        if case == "enter" and len(calls) == 2:  # SIGINT held already, SIGTERM about to be
            os.kill(os.getpid(), signal.SIGTERM)
        if case == "exit" and len(calls) == 4:  # SIGINT given back already, SIGTERM about to be
            os.kill(os.getpid(), signal.SIGINT)
        return _signal.signal(signum, handler)

    shim = types.SimpleNamespace(**{name: getattr(_signal, name) for name in dir(_signal) if not name.startswith("__")})
    shim.signal = signal_with_a_stop_in_between
    interrupts._signal = shim
    try:
        with interrupts.Deferred():
            print("inside the block")
        for _ in range(1000):
            pass
        print("nothing raised")
    except KeyboardInterrupt:
        print("KeyboardInterrupt after the block")
    interrupts._signal = _signal
    print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGTERM) is stop)
    """
)


@pytest.mark.parametrize("case", ["enter", "exit"])
def test_a_stop_signal_between_two_handler_swaps_leaves_no_handler_swapped(case):
    """Deferred swaps two handlers in and two out: a signal landing between two swaps must neither escape halfway
    (leaving one handler swapped for the rest of the process, so that later Ctrl-Cs were swallowed) nor be lost."""
    done = subprocess.run(
        [sys.executable, "-c", SWAP_RACE, case], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["inside the block", "KeyboardInterrupt after the block", "True True"], done.stdout


@pytest.mark.parametrize(
    ("command", "code", "stderr"),
    [
        ("sys.stderr.write('error: bad input\\n'); sys.exit(2)", 2, "error: bad input\n"),
        # a Ctrl-C that lands while the exit propagates (after the command's last line): the exit stands
        ("try:\n        sys.stderr.write('error: bad input\\n'); sys.exit(2)\n"
         "    finally:\n        raise KeyboardInterrupt", 2, "error: bad input\n"),
        ("raise KeyboardInterrupt", 130, "\naborted\n"),
    ],
)  # fmt: skip
def test_run_keeps_the_exit_a_late_ctrl_c_interrupted(command, code, stderr):
    script = f"import sys\nfrom sync_admin import interrupts\ndef command():\n    {command}\ninterrupts.run(command)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (code, stderr)
