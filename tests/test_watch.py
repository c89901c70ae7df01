"""`sync-admin watch` as a real process: it prints the skips another connection records, reconnects
when its connection is killed, reports to Sentry (a local HTTP endpoint: nothing leaves the
machine), and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from helpers import flag_on, insert_customer, run_cli

from sync_admin import events, migrate, release
from sync_admin.watch import APPLICATION_NAME, Options, Watcher

WAIT_SECONDS = 30  # an upper bound for a line to show up; never an assertion on speed
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class WatchProcess:
    """`python -m sync_admin.cli watch` (or another long-running command) in a subprocess, its output read line
    by line."""

    def __init__(
        self, db_url: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ("watch", "--heartbeat", "0.5")
    ) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and k != "SENTRY_DSN"}
        environment |= {"NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync_admin.cli", "--database-url", db_url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.seen_out: list[str] = []
        self.seen_err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def wait_for(self, pattern: str, *, stream: str = "out") -> str:
        lines, seen = (self.out, self.seen_out) if stream == "out" else (self.err, self.seen_err)
        while True:
            try:
                line = lines.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {seen}") from None
            seen.append(line)
            if re.search(pattern, line):
                return line

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C: (exit code, the rest of stdout, the rest of stderr)."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=WAIT_SECONDS)
        return code, _drain(self.out), _drain(self.err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _pump(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def _drain(lines: queue.Queue[str]) -> str:
    rest = []
    while True:
        try:
            rest.append(lines.get(timeout=1))
        except queue.Empty:
            return "\n".join(rest)


@pytest.fixture
def watch(db_url: str) -> Iterator[Callable[..., WatchProcess]]:
    started: list[WatchProcess] = []

    def start(**env: str) -> WatchProcess:
        process = WatchProcess(db_url, env)
        started.append(process)
        process.wait_for(r"watching channel billing_sync_skips")  # printed once it LISTENs
        return process

    yield start
    for process in started:
        process.kill()


def test_watch_prints_a_skip_recorded_by_another_connection_and_stops_on_ctrl_c(conn, watch):
    flag_on(conn)
    process = watch()
    customer = insert_customer(conn, "\x1b[2Jbad value")
    line = process.wait_for(rf"skip not_an_account: customer {customer} ")
    assert "value '\\x1b[2Jbad value' (13 chars)" in line  # escaped: it cannot clear the terminal
    process.wait_for(r"heartbeat: \d+ skips in the last 0.5s")
    code, out, err = process.interrupt()
    assert code == 0
    assert out.splitlines()[-1] == "stopped; 1 skips seen"
    assert "Traceback" not in err and "aborted" not in err


def test_watch_reconnects_when_its_connection_is_killed_and_prints_what_it_missed(conn, watch):
    flag_on(conn)
    process = watch()
    before = insert_customer(conn, "bad one")
    process.wait_for(rf"customer {before} ")
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = %s AND datname = current_database()",
        (APPLICATION_NAME,),
    )
    during = insert_customer(conn, "bad two")  # most likely while the watch waits to reconnect
    process.wait_for(r"connection lost", stream="err")
    process.wait_for(r"reconnected", stream="err")
    process.wait_for(rf"customer {during} ")
    after = insert_customer(conn, "bad three")
    process.wait_for(rf"customer {after} ")
    code, out, _ = process.interrupt()
    assert code == 0
    printed = Counter(m[1] for m in re.finditer(r"customer (\d+) ", "\n".join([*process.seen_out, out])))
    assert printed == {str(before): 1, str(during): 1, str(after): 1}


def test_after_the_release_watch_says_so_and_prints_the_skips(conn, db_url, watch):
    flag_on(conn)
    migrate.upgrade(db_url, guard=release.GuardOptions(min_hours=0, actor="rita", reason="released"))
    process = watch()
    process.wait_for(r"account_data_persistence released .* by rita .*: the sync is always on")
    customer = insert_customer(conn, "bad value!")
    process.wait_for(rf"skip not_an_account: customer {customer} ")
    code, out, _ = process.interrupt()  # at once: the skip printed is counted
    assert code == 0 and out.splitlines()[-1] == "stopped; 1 skips seen"


def test_watch_exits_3_with_one_line_when_the_database_cannot_be_reached(capsys):
    code, _, err = run_cli(capsys, "postgresql://watcher:secret@127.0.0.1:1/none", "watch")
    assert code == 3
    assert len(err.strip().splitlines()) == 1
    assert "secret" not in err and "Traceback" not in err


# --- Sentry ---------------------------------------------------------------------------------------


class SentryEndpoint:
    """A local stand-in for Sentry's ingest: every envelope POSTed to it, decoded."""

    def __init__(self) -> None:
        self.envelopes: queue.Queue[list[dict]] = queue.Queue()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                endpoint.envelopes.put([json.loads(line) for line in body.splitlines() if line.strip()])
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_event(self) -> dict:
        """The next envelope's event item (header, item header, event: one JSON document per line)."""
        while True:
            try:
                envelope = self.envelopes.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                raise AssertionError("no envelope reached the local Sentry endpoint") from None
            items = envelope[1:]
            for header, payload in zip(items[::2], items[1::2], strict=False):
                if header.get("type") == "event":
                    return payload


@pytest.fixture
def sentry() -> Iterator[SentryEndpoint]:
    endpoint = SentryEndpoint()
    yield endpoint
    endpoint.server.shutdown()


def test_watch_sends_each_skip_to_sentry_with_its_reason_code_as_fingerprint(conn, watch, sentry):
    flag_on(conn)
    process = watch(SENTRY_DSN=f"http://public@127.0.0.1:{sentry.port}/1")
    assert f"reporting to Sentry at 127.0.0.1:{sentry.port} project 1" in process.seen_out[0]
    customer = insert_customer(conn, "not an account")
    process.wait_for(rf"customer {customer} ")
    event = sentry.next_event()
    assert event["fingerprint"] == ["not_an_account"]
    assert event["level"] == "warning"
    assert event["tags"]["reason"] == "not_an_account"
    assert event["extra"]["customer_id"] == customer
    assert event["extra"]["value"] == "not an account"
    code, _, err = process.interrupt()
    assert code == 0 and "Traceback" not in err


def test_a_bulk_statement_sends_a_bounded_number_of_sentry_events(conn):
    """Past the per-transaction limit, the rest of a statement's skips go as one event per reason."""
    flag_on(conn)
    reported = Reporter()
    watcher = Watcher("", Options(sentry_per_transaction=10), lambda line: None, lambda line: None, reported)
    watcher.reader = conn
    watcher.read()  # places the cursor
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c@example.com', 'bad ' || g FROM generate_series(1, 25) g"
    )
    watcher.read()
    assert watcher.total == {"not_an_account": 25}
    assert len(reported.events) == 10
    assert reported.overflow == [Counter({"not_an_account": 15})]


UNTRUSTED_PAYLOADS = [
    '{"transaction_id": Infinity, "first_event_id": 1}',
    '{"transaction_id": NaN, "first_event_id": 1}',
    '{"transaction_id": 1e400, "first_event_id": 1}',
    '{"transaction_id": 99999999999999999999999, "first_event_id": 1}',
    '{"transaction_id": -1, "first_event_id": -5}',
    '{"transaction_id": "1", "first_event_id": [1]}',
    "[1, 2]",
    "null",
    "",
    "\x1b[2J not json",
]


def test_no_notification_payload_stops_the_watch(conn, watch):
    """Any role can NOTIFY billing_sync_skips: the payloads are never trusted, they only wake the watch."""
    flag_on(conn)
    process = watch()
    for payload in UNTRUSTED_PAYLOADS:
        conn.execute("SELECT pg_notify('billing_sync_skips', %s)", (payload,))
    customer = insert_customer(conn, "not an account")
    process.wait_for(rf"skip not_an_account: customer {customer} ")
    code, _, err = process.interrupt()
    assert code == 0 and "Traceback" not in err


def test_skips_reach_the_watch_and_sentry_without_any_notification(conn, watch, sentry):
    """The table is the truth: an event whose notification never came (suppressed, lost) is printed and sent to
    Sentry all the same."""
    flag_on(conn)
    process = watch(SENTRY_DSN=f"http://public@127.0.0.1:{sentry.port}/1")
    customer = insert_customer(conn, "A-1")
    conn.execute(
        "INSERT INTO billing_sync.sync_events (customer_id, operation, reason, value, value_length, transaction_id)"
        " VALUES (%s, 'UPDATE', 'not_an_account', 'quiet', 5, txid_current())",
        (customer,),
    )
    process.wait_for(rf"skip not_an_account: customer {customer} .*'quiet'")
    event = sentry.next_event()
    assert event["extra"]["customer_id"] == customer and event["extra"]["value"] == "quiet"


def test_a_transaction_that_commits_after_a_later_one_is_not_missed(conn, connect, watch):
    """Event ids follow the order rows are written, not the order transactions commit: the watch reads by
    snapshot, so the early writer's skip, committed last, is printed too (and nothing twice)."""
    flag_on(conn)
    process = watch()
    early = connect(autocommit=False)
    early.execute(
        "INSERT INTO public.customers (email, zuora_account_id) VALUES ('early@example.com', 'early bad')"
    )  # open: its event has the lower id
    late = insert_customer(conn, "late bad")
    process.wait_for(rf"customer {late} ")
    time.sleep(2.5)  # at least one read with the early transaction still open
    early.commit()
    process.wait_for(r"'early bad'")
    process.wait_for(r"heartbeat")
    code, out, _ = process.interrupt()
    assert code == 0
    printed = "\n".join(process.seen_out) + out
    assert printed.count("'early bad'") == 1 and printed.count("'late bad'") == 1
    assert out.splitlines()[-1] == "stopped; 2 skips seen"


class Reporter:
    """Collects what the watch would send to Sentry (the database under it is real)."""

    def __init__(self) -> None:
        self.events: list[events.SkipEvent] = []
        self.overflow: list[Counter[str]] = []

    def report(self, event: events.SkipEvent) -> None:
        self.events.append(event)

    def report_overflow(self, transaction_id: int, counts: Counter[str]) -> None:
        self.overflow.append(counts)


@pytest.fixture
def listener_session(connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    session = connect()
    session.execute(f"LISTEN {events.CHANNEL}")
    return session


def test_the_newest_open_writer_is_not_missed_when_an_older_one_commits_first(conn, connect):
    """A (older transaction id) and B (newer) are open; B records its skip first, A second, A commits: the
    snapshot then has no transaction in progress below its xmax, so a cursor built on the in-progress list alone
    lost B's event for good. Reading what the last snapshot could not see catches it when B commits."""
    flag_on(conn)
    shown: list[str] = []
    watcher = Watcher("", Options(), shown.append, lambda line: None, None)
    watcher.reader = conn
    watcher.read()  # places the cursor
    older, newer = connect(autocommit=False), connect(autocommit=False)
    older.execute("SELECT txid_current()")
    newer.execute("SELECT txid_current()")
    newer.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('b@example.com', 'b bad')")
    older.execute("INSERT INTO public.customers (email, zuora_account_id) VALUES ('a@example.com', 'a bad')")
    older.commit()
    watcher.read()
    assert [line for line in shown if "'a bad'" in line] and not [line for line in shown if "'b bad'" in line]
    newer.commit()
    watcher.read()
    watcher.read()
    assert sum("'b bad'" in line for line in shown) == 1 and sum("'a bad'" in line for line in shown) == 1


def test_a_read_interrupted_part_way_prints_nothing_twice(conn):
    flag_on(conn)
    shown: list[str] = []
    watcher = Watcher("", Options(), shown.append, lambda line: None, None)
    watcher.reader = conn
    watcher.read()
    conn.execute(
        "INSERT INTO public.customers (email, zuora_account_id)"
        " SELECT 'c@example.com', 'bad ' || g FROM generate_series(1, 5) g"
    )
    reading = events.read_new(conn, watcher.cursor)
    first = next(reading)  # the connection "drops" after the first event was printed
    watcher.show(first, to_sentry=False)
    watcher.printed_unfinished.add(first.id)
    reading.close()
    watcher.read()  # the next try, from the same cursor
    assert watcher.total == {"not_an_account": 5}
