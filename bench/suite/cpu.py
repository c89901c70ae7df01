"""CPU seconds spent by the embedded server's processes and by pgbench: a second, noise-robust view.

On a machine shared with other work, throughput swings with the neighbours' load; the CPU time a variant
needs per transaction does much less. Read from /proc (Linux), for the embedded server only: the postmaster
(its own time plus its reaped children's) and its live children (backends, WAL writer, checkpointer, ...).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; the name may contain spaces


class ServerCpu:
    """CPU seconds of one PostgreSQL server (postmaster and children) since it started."""

    def __init__(self, data_dir: Path | None) -> None:
        self.postmaster = _postmaster_pid(data_dir) if data_dir is not None else None

    @property
    def available(self) -> bool:
        return self.postmaster is not None and Path("/proc").is_dir()

    def seconds(self) -> float:
        """Postmaster's own and reaped children's time plus its live children's, read so that no child is
        reaped in between (its time would be in neither): the children are listed before and after the
        postmaster, and the reading repeated until both lists agree."""
        if self.postmaster is None:
            return 0.0
        for _ in range(100):
            before = self._children()
            fields = _stat_fields(self.postmaster)
            after = self._children()
            if fields is None:
                return 0.0
            if before.keys() == after.keys():
                # utime stime cutime cstime are fields 14-17 (indexes 11-14 here).
                total = sum(int(value) for value in fields[11:15])
                total += sum(int(child[11]) + int(child[12]) for child in after.values())
                return total / TICKS
        return 0.0

    def settle(self, timeout: float = 1.0) -> None:
        """Wait until no child of the postmaster is an exited, unreaped process (a zombie shows no CPU time, and
        once reaped its time moves to the postmaster's children's time): else a run's backends could be counted
        in the next run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(fields[0] == "Z" for fields in self._children().values()):
            time.sleep(0.01)

    def _children(self) -> dict[int, list[str]]:
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = _stat_fields(int(entry.name))
                if fields is not None and fields[1] == str(self.postmaster):
                    found[int(entry.name)] = fields
        return found


def client_seconds() -> float:
    """CPU seconds of this process's reaped children (pgbench runs)."""
    times = os.times()
    return times.children_user + times.children_system


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
