"""The order of a run: long work first, spread over pytest-xdist's workers.

pytest-xdist's worksteal scheduler hands each of the N workers a contiguous share of the collection (the first
worker len // N items, the next a share of the rest, ...); a worker that runs dry steals the second half of the
longest queue. Left in file order, the soak (about 50 s) sat at the end of one share and was stolen last, and
the run ended with one worker busy and the others idle. So the long units go to the front of the shares, the
longest first, each to the share with the least long work so far (longest processing time first), and every
share is then filled up to its size with the other tests, in their order:

* a test marked `@pytest.mark.slow(seconds)` is a unit of its own (seconds measured with
  `python -m pytest --durations=20` on 2 cores);
* the tests that use the session's Unleash server (the `unleash` fixture of tests/test_unleash_bridge.py) are one
  unit, so that one worker starts that server (about 10 s of CPU) instead of each worker that picks one up.

Only the order changes: every collected test runs. Without xdist (one worker) the units simply come first.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

UNLEASH_FIXTURE = "unleash"
UNLEASH_START_SECONDS = 10.0  # node and unleash-server starting, migrating their database
SECONDS_PER_TEST = 0.9  # the suite's mean (setup, call and teardown) on 2 cores


def estimated_seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    if marker is None:
        return SECONDS_PER_TEST
    seconds = marker.args[0] if marker.args else marker.kwargs.get("seconds", SECONDS_PER_TEST)
    return float(seconds)


def unit_of(item: pytest.Item) -> str | None:
    """The long unit ITEM belongs to, or None for the bulk of the tests."""
    if UNLEASH_FIXTURE in getattr(item, "fixturenames", ()):
        return UNLEASH_FIXTURE
    if item.get_closest_marker("slow") is not None:
        return item.nodeid
    return None


def share_sizes(total: int, workers: int) -> list[int]:
    """How worksteal splits TOTAL items over WORKERS idle workers at the start."""
    sizes = []
    for number in range(workers):
        size = total // (workers - number)
        sizes.append(size)
        total -= size
    return sizes


def front_loaded(items: Sequence[pytest.Item], workers: int) -> list[pytest.Item]:
    units: dict[str, list[pytest.Item]] = {}
    rest: list[pytest.Item] = []
    for item in items:
        key = unit_of(item)
        if key is None:
            rest.append(item)
        else:
            units.setdefault(key, []).append(item)

    def weight(key: str) -> float:
        extra = UNLEASH_START_SECONDS if key == UNLEASH_FIXTURE else 0.0
        return extra + sum(estimated_seconds(item) for item in units[key])

    workers = max(1, workers)
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for key in sorted(units, key=weight, reverse=True):
        lightest = loads.index(min(loads))
        shares[lightest].extend(units[key])
        loads[lightest] += weight(key)

    ordered: list[pytest.Item] = []
    remaining = iter(rest)
    for share, size in zip(shares, share_sizes(len(items), workers), strict=True):
        ordered.extend(share)
        ordered.extend(item for _, item in zip(range(size - len(share)), remaining, strict=False))
    ordered.extend(remaining)
    return ordered
