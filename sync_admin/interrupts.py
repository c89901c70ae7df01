"""Ctrl-C at any moment of a `sync-admin` command ends in one line, never in a traceback or a half-loaded module.

Two places need it, both before the commands' own handling of KeyboardInterrupt can help:
* the executable's start (`main`, the console script): the import of the CLI takes a few hundred milliseconds, and
  a Ctrl-C during it would print Python's traceback; after the command, a late Ctrl-C (while the interpreter shuts
  down) would turn a finished command's exit status into "killed by SIGINT";
* the CLI's lazy modules (cli._lazy): a Ctrl-C while one executes on first use would leave it half-initialised in
  sys.modules for the rest of the process, so that the command's interrupt handling then failed with an
  AttributeError ("internal error") instead of saying what was saved.
"""

from __future__ import annotations

# The C modules, not `signal` (which imports enum): the executable holds Ctrl-C back as early as it can, and these
# load in microseconds where `signal` takes milliseconds of the start-up window this module exists to close.
import _signal
import sys

TYPE_CHECKING = False  # typing itself takes milliseconds to import: see above
if TYPE_CHECKING:
    from types import FrameType, TracebackType

ABORTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for an interrupted command


class Deferred:
    """Run the block with Ctrl-C held back; one that came during it is raised as KeyboardInterrupt at its end.

    Only Python's own SIGINT handler is replaced, and only in the main thread (elsewhere signal.signal refuses, and
    signals are delivered to the main thread anyway): a command that installed its own handler keeps it. An
    exception of the block wins over a held-back Ctrl-C."""

    def __init__(self) -> None:
        self._received = False
        self._holding = False

    def _hold(self, _signum: int, _frame: FrameType | None) -> None:
        self._received = True

    def __enter__(self) -> None:
        if _signal.getsignal(_signal.SIGINT) is not _signal.default_int_handler:
            return
        try:
            _signal.signal(_signal.SIGINT, self._hold)
        except ValueError:  # not the main thread
            return
        self._holding = True

    def __exit__(
        self, kind: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        if not self._holding:
            return
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        if self._received and kind is None:
            raise KeyboardInterrupt


def main() -> None:
    """The `sync-admin` executable: the CLI loaded with Ctrl-C held back, then run. A Ctrl-C that lands outside the
    commands' own handling (while an error line is being made, say) ends in "aborted" and exit 130 too, and one after
    the command has finished is ignored."""
    try:
        with Deferred():
            from sync_admin import cli
        cli.main()
    except KeyboardInterrupt:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        sys.stderr.write("aborted\n")
        sys.exit(ABORTED_EXIT_CODE)
    finally:
        # The command has said what it did (its output, or its exit status via SystemExit): a Ctrl-C while the
        # interpreter shuts down must not change what it reports.
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
