"""The test harness itself: the maintenance connection that clones every test's database, and the run's order."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import scheduling
from psycopg import sql


def test_the_maintenance_connection_comes_back_after_a_test_terminated_it(maintenance, conn):
    before = maintenance.execute(sql.SQL("SELECT pg_backend_pid()")).fetchone()[0]
    assert conn.execute("SELECT pg_terminate_backend(%s, 10000)", (before,)).fetchone()[0]  # waits until it is gone
    after = maintenance.execute(sql.SQL("SELECT pg_backend_pid()")).fetchone()[0]
    assert after != before


@dataclass
class FakeItem:
    """What tests/scheduling.py reads of a pytest item."""

    nodeid: str
    fixturenames: list[str] = field(default_factory=list)
    slow: tuple | None = None
    slow_kwargs: dict = field(default_factory=dict)

    def get_closest_marker(self, name: str) -> SimpleNamespace | None:
        if name != "slow" or self.slow is None:
            return None
        return SimpleNamespace(args=self.slow, kwargs=self.slow_kwargs)


def test_the_order_keeps_every_test_once_and_puts_long_work_at_the_front_of_each_share():
    rng = random.Random(11)
    for _ in range(2000):
        items = []
        for number in range(rng.randrange(0, 60)):
            kind = rng.random()
            if kind < 0.1:
                items.append(FakeItem(f"t{number}", slow=(rng.randrange(5, 60),)))
            elif kind < 0.15:
                items.append(FakeItem(f"t{number}", slow=(), slow_kwargs={"seconds": 30}))
            elif kind < 0.3:
                items.append(FakeItem(f"t{number}", fixturenames=["conn", "unleash"]))
            else:
                items.append(FakeItem(f"t{number}"))
        workers = rng.randrange(1, 9)
        ordered = scheduling.front_loaded(items, workers)
        assert sorted(item.nodeid for item in ordered) == sorted(item.nodeid for item in items)


def test_each_worker_share_starts_with_its_long_unit():
    items = [FakeItem(f"quick{n}") for n in range(40)]
    items[30] = FakeItem("soak", slow=(48,))
    items[35] = FakeItem("bench", slow=(), slow_kwargs={"seconds": 44})
    items[5] = FakeItem("bridge", fixturenames=["unleash"])
    ordered = scheduling.front_loaded(items, 4)
    starts = [ordered[0].nodeid, ordered[10].nodeid, ordered[20].nodeid, ordered[30].nodeid]
    assert starts[:3] == ["soak", "bench", "bridge"]
    assert scheduling.share_sizes(40, 4) == [10, 10, 10, 10]
