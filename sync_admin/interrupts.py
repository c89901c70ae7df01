"""Ctrl-C (or SIGTERM to a service) at any moment of a `sync-admin` command ends in one line, never in a traceback
or a half-loaded module.

Where the commands' own handling of KeyboardInterrupt cannot help:
* the executable's start (`main`, the console script): loading the CLI takes tens of milliseconds, and a Ctrl-C
  during it would print Python's traceback; after the command, a late Ctrl-C (while the interpreter shuts down)
  would turn a finished command's exit status into "killed by SIGINT";
* the CLI's lazy modules (cli._lazy): an interrupt while one is imported on first use would leave it
  half-initialised for the rest of the process, so that the command's interrupt handling then failed on it
  ("internal error: AttributeError") instead of saying what was saved;
* the last line of a failed command and its exit status: a second Ctrl-C between them would add "aborted".
What is left: Ctrl-C in the first milliseconds, while the interpreter itself starts, before any code of ours runs.

No `from __future__ import annotations` and nothing but C modules here: each import before `Deferred` is in place
widens the start-up window this module exists to close (the annotations below are strings).
"""

import _signal
import sys

TYPE_CHECKING = False  # typing itself takes milliseconds to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType

ABORTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for an interrupted command
# The signals whose Python handlers stop a command by raising KeyboardInterrupt: Ctrl-C (Python's own handler) and
# SIGTERM while a service runs (watch.sigterm_stops).
STOP_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)


class Deferred:
    """Run the block with the stop signals held back; one that came during it is delivered at its end, to the
    handler it would have reached (KeyboardInterrupt, for both).

    Only Python-level handlers are replaced (a signal left to the operating system, such as SIGTERM outside the
    services, keeps its default), and only in the main thread (elsewhere signal.signal refuses, and signals are
    delivered to the main thread anyway). Nested blocks leave the holding to the outermost. An exception of the
    block wins over a held-back signal: the command is ending anyway.

    The handlers are swapped with the stop signals blocked (pthread_sigmask), and a signal that came before the
    block (whose Python handler runs inside signal.signal, before the swap) is caught there and counted as held:
    a signal can never leave a handler swapped, and none escapes halfway through a swap."""

    def __init__(self) -> None:
        self._held: dict[int, Callable[[int, FrameType | None], object]] = {}  # signal -> the handler it would reach
        self._received: list[int] = []

    def _hold(self, signum: int, _frame: "FrameType | None") -> None:
        self._received.append(signum)

    def __enter__(self) -> None:
        with _StopSignalsBlocked():
            for signum in STOP_SIGNALS:
                handler = _signal.getsignal(signum)
                if not callable(handler) or getattr(handler, "__self__", None).__class__ is Deferred:
                    continue  # the operating system's default or ignore, or an outer block already holds it
                try:
                    previous = self._swap(signum, self._hold)
                except ValueError:  # not the main thread
                    return
                self._held[signum] = previous

    def __exit__(
        self, kind: "type[BaseException] | None", _value: "BaseException | None", _traceback: "TracebackType | None"
    ) -> None:
        with _StopSignalsBlocked():
            for signum, handler in self._held.items():
                self._swap(signum, handler)
        if self._received and kind is None:
            signum = self._received[0]
            self._held[signum](signum, None)

    def _swap(self, signum: int, handler: "Callable[[int, FrameType | None], object]") -> "object":
        """signal.signal(SIGNUM, HANDLER), the previous handler returned; a stop signal that came earlier (its Python
        handler runs first, inside signal.signal) is counted as received here instead of raised."""
        while True:
            try:
                return _signal.signal(signum, handler)
            except KeyboardInterrupt:
                self._received.append(signum)


class _StopSignalsBlocked:
    """The stop signals blocked for this thread while the block runs (they stay pending, not lost)."""

    def __enter__(self) -> None:
        self._mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, STOP_SIGNALS)

    def __exit__(self, *_exc: object) -> None:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self._mask)


def run(command: "Callable[[], None]") -> None:
    """Run COMMAND (the CLI's main): a stop signal that escapes its own handling ends in "aborted" and exit 130, and
    one after it has finished is ignored. One that interrupted the command's exit (its last line said, its exit status
    on the way) leaves that exit as it was."""
    try:
        command()
    except KeyboardInterrupt as interrupt:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        if isinstance(interrupt.__context__, SystemExit):
            raise interrupt.__context__ from None
        sys.stderr.write("\naborted\n")  # the shape of click's own: a new line after the terminal's ^C
        sys.exit(ABORTED_EXIT_CODE)
    finally:
        # The command has said what it did (its output, or its exit status via SystemExit): a Ctrl-C while the
        # interpreter shuts down must not change what it reports.
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)


def main() -> None:
    """The `sync-admin` executable (and `python -m sync_admin`): the CLI loaded with Ctrl-C held back, then run."""

    def load_and_run() -> None:
        with Deferred():
            from sync_admin import cli
        cli.main()

    run(load_and_run)
