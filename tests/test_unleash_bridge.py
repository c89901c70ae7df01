"""The Unleash bridge against a real unleash-server (npm, pinned in tests/unleash/package-lock.json).

The server is started once per session on its own database of the PostgreSQL under test (tokens made up for the
run) and driven through its admin API as an operator's clicks would; the database of each test must follow:
on, percentages, actors, off, archive, what it cannot represent, a server down and back, a kill switch pulled in
the database. Answers no Unleash would give (garbage, slow, huge) come from a local HTTP server. The cohort of
billing_sync.flag_enabled_for is compared with Unleash's own Python SDK evaluating against the live server.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from envtools import write
from helpers import run_cli
from test_watch import PROXY_VARIABLES, SentryEndpoint
from unleash_server import FLAG, UnleashServer, missing_install, rollout, user_ids

from sync_admin import migrate, release

WAIT_SECONDS = 30  # an upper bound for a state to be reached; never an assertion on speed
ENV = "test"


@pytest.fixture(scope="session")
def unleash(pg_server, tmp_path_factory) -> Iterator[UnleashServer]:
    """One real Unleash server for the session (its own database on the server under test)."""
    problem = missing_install()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    server = UnleashServer(pg_server, tmp_path_factory.mktemp("unleash"))
    server.create_database()
    try:
        try:
            server.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
    finally:
        server.stop()
        server.drop_database()


@pytest.fixture
def operator(unleash: UnleashServer) -> UnleashServer:
    """The server with the flag as new (off, no strategy), served so."""
    if not unleash.healthy():  # a test that stopped it failed before starting it again
        unleash.start()
    unleash.reset()
    unleash.wait_served(lambda f: f is not None and not f["enabled"] and not f["strategies"], "reset")
    return unleash


def configure(tmp_path: Path, monkeypatch, db_url: str, unleash: UnleashServer, **overrides: str) -> dict[str, str]:
    """sync-admin.toml with the environment `test`: this test's database following the server's production
    environment. Returns the variables a subprocess needs."""
    table = {
        "url": unleash.url,
        "environment": "production",
        "token_env": "UNLEASH_CLIENT_TOKEN",
        "admin_token_env": "UNLEASH_ADMIN_TOKEN",
        **overrides,
    }
    lines = "\n".join(f'{key} = "{value}"' for key, value in table.items() if value)
    config = write(
        tmp_path / "sync-admin.toml",
        f'[environments.{ENV}]\nurl_env = "BRIDGE_DATABASE_URL"\n\n[environments.{ENV}.unleash]\n{lines}\n',
    )
    variables = {
        "SYNC_ADMIN_CONFIG": str(config),
        "BRIDGE_DATABASE_URL": db_url,
        "UNLEASH_CLIENT_TOKEN": unleash.client_token,
        "UNLEASH_ADMIN_TOKEN": unleash.admin_token,
    }
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    return variables


@pytest.fixture
def bridge(tmp_path, monkeypatch, db_url, operator) -> dict[str, str]:
    return configure(tmp_path, monkeypatch, db_url, operator)


def sync(capsys, *args: str) -> tuple[int, str, str]:
    code, out, err = run_cli(capsys, None, "--env", ENV, "unleash", "sync", *args)
    assert "Traceback" not in err
    return code, out, err


def state(conn) -> tuple[bool, bool, int, list[int]]:
    """(kill switch, everyone, percentage, actors) of the database flag."""
    row = conn.execute(
        "SELECT enabled, everyone, percentage FROM billing_sync.feature_flags WHERE name = %s", (FLAG,)
    ).fetchone()
    actors = conn.execute(
        "SELECT customer_id FROM billing_sync.feature_flag_actors WHERE flag_name = %s ORDER BY 1", (FLAG,)
    ).fetchall()
    return (*row, [a[0] for a in actors])


def last_audit(conn) -> tuple[str, str, str]:
    """(actor, reason, application_name) of the newest audit row."""
    return conn.execute(
        "SELECT actor, reason, application_name FROM billing_sync.feature_flag_events ORDER BY id DESC LIMIT 1"
    ).fetchone()


def served_rollout(percentage: int) -> Callable[[dict | None], bool]:
    return lambda f: f is not None and any(s["parameters"].get("rollout") == str(percentage) for s in f["strategies"])


def served_enabled(enabled: bool) -> Callable[[dict | None], bool]:
    return lambda f: f is not None and f["enabled"] is enabled


def no_secret(unleash: UnleashServer, *texts: str) -> None:
    for text in texts:
        for token in (unleash.client_token, unleash.admin_token):
            assert token not in text and token.split(".")[-1] not in text


# --- following the flag page -------------------------------------------------------------------------------------


def test_sync_follows_on_percentages_actors_and_off(conn, capsys, bridge, operator):
    code, out, _ = sync(capsys)
    assert code == 0 and "nothing to change" in out
    assert state(conn) == (False, False, 0, [])

    operator.switch(True)  # a flag switched on without a strategy: Unleash adds a 100 % rollout
    operator.wait_served(served_enabled(True), "on")
    code, out, _ = sync(capsys, "--dry-run")
    assert code == 0
    assert "would change: kill switch: off (pulled) -> on" in out and "would change: everyone: no -> yes" in out
    assert "dry run: nothing changed" in out
    assert state(conn) == (False, False, 0, [])
    code, out, _ = sync(capsys)
    assert code == 0 and "changed: kill switch: off (pulled) -> on" in out
    assert state(conn) == (True, True, 0, [])
    actor, reason, application = last_audit(conn)
    assert application == "sync-admin unleash"
    assert actor.startswith("unleash:")  # who switched it on there, from the event log (admin token)
    assert re.search(
        r"Unleash production: on: everyone \(revision \d+\); Unleash event \d+ \(feature-environment-enabled\)", reason
    )

    strategy_id = _strategy_id(operator)
    operator.update_strategy(strategy_id, rollout(25))
    operator.wait_served(served_rollout(25), "25 %")
    code, out, _ = sync(capsys)
    assert code == 0 and "changed: percentage: 0 % -> 25 %" in out and "changed: everyone: yes -> no" in out
    assert state(conn) == (True, False, 25, [])

    ids = operator.add_strategy(user_ids(101, 102))
    operator.wait_served(lambda f: f is not None and len(f["strategies"]) == 2, "with a list")
    code, out, _ = sync(capsys)
    assert code == 0 and "changed: actors: +101, +102" in out
    assert state(conn) == (True, False, 25, [101, 102])
    operator.update_strategy(ids, user_ids(102, 103))
    operator.wait_served(lambda f: f is not None and any("103" in str(s) for s in f["strategies"]), "new list")
    code, out, _ = sync(capsys, "--format", "json")
    assert code == 0 and '"changes": [\n    "actors: +103; -101"\n  ]' in out
    assert state(conn) == (True, False, 25, [102, 103])
    assert conn.execute("SELECT billing_sync.flag_enabled_for(%s, 103)", (FLAG,)).fetchone()[0] is True

    operator.switch(False)
    operator.wait_served(served_enabled(False), "off")
    code, out, _ = sync(capsys)
    assert code == 0 and "changed: kill switch: on -> off (pulled)" in out
    assert state(conn) == (False, False, 25, [102, 103])  # gates kept, as Unleash keeps its strategies
    assert "feature-environment-disabled" in last_audit(conn)[1]
    code, out, _ = sync(capsys)
    assert code == 0 and "nothing to change" in out


def _strategy_id(operator: UnleashServer) -> str:
    environments = operator.admin("GET", operator.feature_path())["environments"]
    [strategy] = next(e for e in environments if e["name"] == "production")["strategies"]
    return strategy["id"]


def test_without_an_admin_token_the_audit_names_unleash_and_its_revision(
    conn, capsys, tmp_path, monkeypatch, db_url, operator
):
    configure(tmp_path, monkeypatch, db_url, operator, admin_token_env="")
    operator.add_strategy(rollout(40))
    operator.switch(True)
    operator.wait_served(served_enabled(True), "on")
    assert sync(capsys)[0] == 0
    actor, reason, _ = last_audit(conn)
    assert actor == "unleash" and re.fullmatch(r"Unleash production: on: 40 % \(revision \d+\)", reason)
    # --keep-local writes to Unleash, which takes the admin token: without one it says what to do by hand.
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--by", "alice")[0] == 0
    code, _, err = run_cli(capsys, None, "--env", ENV, "unleash", "resolve", "--keep-local")
    assert code == 2 and "needs an admin token (admin_token_env); or switch account_data_persistence off" in err
    assert operator.environment_enabled() is True and state(conn)[0] is False


def test_what_the_database_cannot_represent_is_refused_and_nothing_applied(conn, capsys, bridge, operator):
    strategy = operator.add_strategy(rollout(25))
    operator.switch(True)
    operator.wait_served(served_rollout(25), "25 %")
    assert sync(capsys)[0] == 0
    assert state(conn) == (True, False, 25, [])
    segment = operator.admin(
        "POST",
        "/admin/segments",
        {
            "name": f"beta-{os.getpid()}-{time.monotonic_ns()}",
            "constraints": [{"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@beta.example"]}],
        },
    )["id"]
    unsupported = {
        "a constraint email IN": rollout(
            100, constraints=[{"contextName": "email", "operator": "IN", "values": ["a@b.c"]}]
        ),
        "groupId 'checkout' is not the flag's name": rollout(30, group="checkout"),
        # Unleash inlines a segment's constraints into the strategy for a client that does not ask for segments:
        # they are judged as constraints.
        "a constraint email STR_ENDS_WITH": {**rollout(100), "segments": [segment]},
        "stickiness 'sessionId'": rollout(30, stickiness="sessionId"),
        "2 variants": {
            **rollout(30),
            "variants": [
                {"name": "a", "weight": 500, "weightType": "variable", "stickiness": "default"},
                {"name": "b", "weight": 500, "weightType": "variable", "stickiness": "default"},
            ],
        },
    }
    for reason, body in unsupported.items():
        operator.update_strategy(strategy, {"segments": [], **body})  # a strategy keeps its segments unless told
        operator.wait_served(lambda f, body=body: f is not None and _same(f["strategies"][0], body), reason)
        code, out, err = sync(capsys)
        assert code == 5, (reason, out, err)
        assert reason in err and "the database keeps its last good state" in err
        assert len(err.strip().splitlines()) == 1
        assert state(conn) == (True, False, 25, [])  # never approximated
    operator.add_strategy({"name": "remoteAddress", "parameters": {"IPs": "10.0.0.1"}, "constraints": []})
    operator.wait_served(lambda f: f is not None and len(f["strategies"]) == 2, "remoteAddress")
    code, _, err = sync(capsys)
    assert code == 5 and "strategy 2 (remoteAddress): a strategy of another kind" in err
    assert state(conn) == (True, False, 25, [])

    operator.switch(False)  # off is exact whatever the strategies: the rollback step of the runbook works
    operator.wait_served(served_enabled(False), "off")
    code, out, err = sync(capsys)
    assert code == 5 and "changed: kill switch: on -> off (pulled)" in out
    assert "the kill switch follows Unleash's off, the rest is not applied" in err
    assert state(conn) == (False, False, 25, [])


def _same(served: dict, body: dict) -> bool:
    """The served strategy is BODY (a segment served as its inlined constraint)."""
    constraints = len(body.get("constraints") or []) + len(body.get("segments") or [])
    return (
        served["parameters"] == body["parameters"]
        and len(served.get("variants") or []) == len(body.get("variants") or [])
        and len(served.get("constraints") or []) + len(served.get("segments") or []) == constraints
    )


def test_an_archived_flag_is_reported_and_the_database_keeps_its_state(conn, capsys, bridge, operator):
    operator.add_strategy(rollout(100))
    operator.switch(True)
    operator.wait_served(served_enabled(True), "on")
    assert sync(capsys)[0] == 0
    operator.archive()
    operator.wait_served(lambda f: f is None, "archived")
    code, _, err = sync(capsys)
    assert code == 5
    assert "Unleash does not serve account_data_persistence to this token: archived" in err
    assert state(conn) == (True, True, 0, [])


# --- conflicts -------------------------------------------------------------------------------------------------


def test_a_local_kill_switch_wins_until_a_person_resolves_it(conn, capsys, bridge, operator, db_url):
    operator.add_strategy(rollout(100))
    operator.switch(True)
    operator.wait_served(served_enabled(True), "on")
    assert sync(capsys)[0] == 0 and state(conn)[0] is True

    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--by", "alice", "--reason", "INC-9")[0] == 0
    code, out, err = sync(capsys)
    assert code == 6
    assert "the kill switch was pulled in the database by alice at" in err and "(INC-9)" in err
    assert "sync-admin --env test unleash resolve --accept-unleash" in err
    assert state(conn) == (False, True, 0, [])
    operator.update_strategy(_strategy_id(operator), rollout(50))  # Unleash moves on: still not switched on
    operator.wait_served(served_rollout(50), "50 %")
    assert sync(capsys)[0] == 6 and state(conn) == (False, True, 0, [])

    code, _, err = run_cli(capsys, None, "--env", ENV, "unleash", "resolve")
    assert code == 2 and "--accept-unleash or --keep-local" in err
    code, out, _ = run_cli(
        capsys, None, "--env", ENV, "unleash", "resolve", "--accept-unleash", "--by", "bob", "--reason", "INC-9 fixed"
    )
    assert code == 0 and "changed: kill switch: off (pulled) -> on" in out
    assert state(conn) == (True, False, 50, [])
    actor, reason, application = last_audit(conn)
    assert (actor, application) == ("bob", "sync-admin unleash")
    assert reason.startswith("unleash resolve --accept-unleash: INC-9 fixed; Unleash production: on: 50 %")
    assert sync(capsys)[:2] == (
        0,
        "Unleash says account_data_persistence is on: 50 %\nthe database already follows it: nothing to change\n",
    )
    code, _, err = run_cli(capsys, None, "--env", ENV, "unleash", "resolve", "--keep-local")
    assert code == 2 and "no conflict to resolve" in err

    # Pulled again by SQL, kept: --keep-local switches it off in Unleash too, and the two agree.
    with psycopg.connect(db_url, autocommit=True, application_name="psql") as person:
        person.execute("SELECT set_config('billing_sync.actor', 'carol', false)")
        person.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))
    assert sync(capsys)[0] == 6
    code, out, _ = run_cli(capsys, None, "--env", ENV, "unleash", "resolve", "--keep-local", "--by", "carol")
    assert code == 0 and "switched account_data_persistence off in Unleash (production" in out
    assert operator.environment_enabled() is False
    operator.wait_served(served_enabled(False), "off")
    assert sync(capsys)[0] == 0 and state(conn) == (False, False, 50, [])

    # Switched on in Unleash later: the kill switch a person pulled in the database is released by a person.
    operator.switch(True)
    operator.wait_served(served_enabled(True), "on")
    code, _, err = sync(capsys)
    assert code == 6 and "pulled in the database by carol" in err
    assert run_cli(capsys, db_url, "flag", "resume", FLAG, "--by", "carol")[0] == 0
    assert sync(capsys)[0] == 0 and state(conn) == (True, False, 50, [])


def test_a_local_gate_change_is_replaced_and_a_local_resume_against_unleash_off_is_undone(
    conn, capsys, bridge, operator, db_url
):
    operator.add_strategy(rollout(25))
    operator.switch(True)
    operator.wait_served(served_rollout(25), "25 %")
    assert sync(capsys)[0] == 0
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "60", "--by", "dave")[0] == 0
    code, out, _ = sync(capsys)
    assert code == 0 and "changed: percentage: 60 % -> 25 %" in out
    assert "replaced the database's change by dave at" in out
    assert state(conn) == (True, False, 25, [])

    operator.switch(False)
    operator.wait_served(served_enabled(False), "off")
    assert sync(capsys)[0] == 0 and state(conn)[0] is False
    assert run_cli(capsys, db_url, "flag", "resume", FLAG, "--by", "erin")[0] == 0
    code, out, _ = sync(capsys)
    assert code == 0 and "changed: kill switch: on -> off (pulled)" in out and "change by erin" in out
    assert state(conn)[0] is False


def test_after_the_release_the_bridge_says_so_and_applies_nothing(conn, capsys, bridge, operator, db_url):
    migrate.upgrade(db_url, guard=release.GuardOptions(min_hours=0, override="test", actor="rita"))
    operator.add_strategy(rollout(100))
    operator.switch(True)
    for command in (["sync"], ["sync", "--dry-run"], ["resolve", "--accept-unleash"]):
        code, _, err = run_cli(capsys, None, "--env", ENV, "unleash", *command)
        assert code == 7, (command, err)
        assert "account_data_persistence was released" in err and "the bridge has nothing to apply" in err
    assert (
        conn.execute("SELECT count(*) FROM billing_sync.feature_flag_events WHERE actor LIKE 'unleash%'").fetchone()[0]
        == 0
    )


# --- the follow service ------------------------------------------------------------------------------------------


class Service:
    """`sync-admin --env test unleash follow` as a real process, its lines read as they come."""

    def __init__(self, variables: dict[str, str], *args: str) -> None:
        environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and k != "SENTRY_DSN"}
        environment |= {"PYTHONUNBUFFERED": "1", **variables}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync_admin.cli", "--env", ENV, "unleash", "follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.lines: dict[str, queue.Queue[str]] = {"out": queue.Queue(), "err": queue.Queue()}
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        for stream, name in ((self.process.stdout, "out"), (self.process.stderr, "err")):
            threading.Thread(target=self._pump, args=(stream, name), daemon=True).start()

    def _pump(self, stream, name: str) -> None:
        for line in stream:
            self.lines[name].put(line.rstrip("\n"))

    def wait_for(self, pattern: str, stream: str = "out") -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self.lines[stream].get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen[stream].append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} on std{stream}: {self.seen[stream]}")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=WAIT_SECONDS)

    def all_output(self) -> str:
        for name, lines in self.lines.items():
            while not lines.empty():
                self.seen[name].append(lines.get())
        return "\n".join(self.seen["out"] + self.seen["err"])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_the_follow_service_applies_changes_backs_off_while_unleash_is_down_and_reports_conflicts(
    conn, bridge, operator, db_url
):
    service = Service(bridge, "--interval", "0.3", "--max-backoff", "1", "--remind", "1")
    try:
        service.wait_for(r"following account_data_persistence in Unleash production at http://127\.0\.0\.1:\d+ on ")
        operator.add_strategy(rollout(30))
        operator.switch(True)
        wait_until(lambda: state(conn) == (True, False, 30, []), "on at 30 %")
        service.wait_for(r"changed: percentage: 0 % -> 30 %")

        operator.stop()  # Unleash down: the database keeps its state, the service says so and keeps trying
        service.wait_for(
            r"Unleash cannot be read: cannot reach Unleash at .*; the database keeps its state; try 2", "err"
        )
        service.wait_for(r"; try 3 in 1s", "err")
        assert state(conn) == (True, False, 30, [])
        operator.start()
        service.wait_for(r"answer again \(after \d+ failed tries\)", "err")
        operator.update_strategy(_strategy_id(operator), rollout(45))
        wait_until(lambda: state(conn) == (True, False, 45, []), "45 %")

        conn.execute(  # the database drops the service's connection: it reconnects
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'sync-admin unleash' AND datname = current_database()"
        )
        service.wait_for(r"the database cannot be reached: .*; the database keeps its state; try 2", "err")
        service.wait_for(r"answer again", "err")

        with psycopg.connect(db_url, autocommit=True) as person:  # a kill switch pulled by hand, SQL
            person.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))
        service.wait_for(r"conflict \(exit 6 for `unleash sync`\): the kill switch was pulled in the database", "err")
        service.wait_for(r"conflict \(exit 6", "err")  # said again (--remind 1) while it stands
        assert state(conn) == (False, False, 45, [])
        assert service.interrupt() == 0
        output = service.all_output()
        assert re.search(r"stopped; \d+ changes applied", output)
        assert "Traceback" not in output
        no_secret(operator, output)
    finally:
        service.kill()
        if not operator.healthy():
            operator.start()


def test_the_follow_service_stops_with_exit_7_when_the_flag_is_released(conn, bridge, operator, db_url):
    service = Service(bridge, "--interval", "0.2")
    try:
        service.wait_for(r"following account_data_persistence")
        migrate.upgrade(db_url, guard=release.GuardOptions(min_hours=0, override="test", actor="rita"))
        assert service.process.wait(timeout=WAIT_SECONDS) == 7
        output = service.all_output()
        assert "stopped: the flag was released" in output and "account_data_persistence was released" in output
    finally:
        service.kill()


# --- untrusted answers, errors, configuration --------------------------------------------------------------------


def test_without_node_modules_the_fixture_fails_with_the_line_that_says_to_install(monkeypatch, tmp_path):
    import unleash_server

    monkeypatch.setattr(unleash_server, "PACKAGE", tmp_path / "node_modules" / "unleash-server" / "package.json")
    assert unleash_server.missing_install() == (
        "unleash-server is not installed: run `npm ci --prefix tests/unleash` (the Unleash tests use the real server)"
    )


class Misbehaving:
    """An HTTP server that answers /api/client/features as no Unleash would."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        kind = self.behaviour
        if kind == "redirect":
            handler.send_response(302)
            handler.send_header("Location", "http://attacker.example/steal")
            handler.end_headers()
            return
        if kind == "error":
            handler.send_response(503)
            handler.end_headers()
            return
        status, content_type, body = 200, "application/json", b""
        if kind == "html":
            content_type, body = "text/html", b"<html><body>Please log in</body></html>"
        elif kind == "not json":
            body = b"{features: yes"
        elif kind == "wrong shape":
            body = b'{"version": 2, "features": {"account_data_persistence": true}}'
        elif kind == "deep":
            body = b"[" * 5000 + b"]" * 5000
        elif kind == "huge":
            body = b'{"features": [], "padding": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if kind == "slow":
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            while not self.stop.is_set():  # a byte now and then: never silent long enough for a socket timeout
                try:
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            # The bridge stops reading a huge answer at its cap and closes the connection: the rest of the write
            # fails. Left to socketserver, the failure is a traceback on this process's stderr, which the test
            # captures as the command's output when it lands before capsys reads (CI, PostgreSQL 16 run).
            return

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


UNREADABLE = {
    "html": r"answered something that is not JSON \(content type text/html\)",
    "not json": "answered something that is not valid JSON",
    "wrong shape": "not its client API's feature list: features must be a list",
    "deep": "not valid JSON|nested deeper",
    "huge": "answered more than 4 MiB",
    "redirect": "answered a redirect \\(HTTP 302\\)",
    "error": "answered HTTP 503",
    "slow": "did not answer within 1s",
}


@pytest.mark.parametrize("behaviour", UNREADABLE)
def test_an_answer_no_unleash_would_give_changes_nothing(conn, capsys, tmp_path, monkeypatch, db_url, behaviour):
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true, percentage = 10 WHERE name = %s", (FLAG,))
    before = state(conn)
    fake = Misbehaving(behaviour)
    try:
        monkeypatch.setenv("UNLEASH_CLIENT_TOKEN", "default:production.not-a-real-secret-0123456789")
        write(
            tmp_path / "sync-admin.toml",
            f'[environments.{ENV}]\nurl_env = "BRIDGE_DATABASE_URL"\n[environments.{ENV}.unleash]\n'
            f'url = "{fake.url}"\nenvironment = "production"\ntoken_env = "UNLEASH_CLIENT_TOKEN"\n',
        )
        monkeypatch.setenv("SYNC_ADMIN_CONFIG", str(tmp_path / "sync-admin.toml"))
        monkeypatch.setenv("BRIDGE_DATABASE_URL", db_url)
        started = time.monotonic()
        # The deadline is what the slow answer tests; the others get time to be read in full on a busy machine
        # (the fake server is a thread of this process: 5 MB under load took more than 1 s).
        code, out, err = sync(capsys, "--timeout", "1" if behaviour == "slow" else "20")
        elapsed = time.monotonic() - started
    finally:
        fake.close()
    assert code == 4, err
    assert re.search(UNREADABLE[behaviour], err), err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert "not-a-real-secret" not in err and "attacker" not in err
    assert state(conn) == before
    if behaviour == "slow":
        assert elapsed < WAIT_SECONDS  # the deadline holds although bytes keep coming


def test_a_refused_token_or_no_server_changes_nothing_and_shows_no_token(conn, capsys, bridge, operator, monkeypatch):
    before = state(conn)
    monkeypatch.setenv("UNLEASH_CLIENT_TOKEN", "default:production.0123456789abcdef0123456789abcdef")
    code, out, err = sync(capsys)
    assert code == 4 and "refused the token (HTTP 401)" in err
    assert "0123456789abcdef" not in out + err
    monkeypatch.setenv("UNLEASH_CLIENT_TOKEN", operator.other_client_token)  # a development token
    code, _, err = sync(capsys)
    assert code == 2 and "is a token for the Unleash environment 'development', not 'production'" in err
    no_secret(operator, err)
    assert state(conn) == before


def test_configuration_mistakes_are_one_line_and_the_bridge_is_optional(conn, capsys, tmp_path, monkeypatch, db_url):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SYNC_ADMIN_CONFIG", raising=False)
    monkeypatch.setenv("BRIDGE_DATABASE_URL", db_url)
    monkeypatch.delenv("UNLEASH_CLIENT_TOKEN", raising=False)
    base = f'[environments.{ENV}]\nurl_env = "BRIDGE_DATABASE_URL"\n'
    cases = {
        "": ("say which database follows Unleash: sync-admin --env NAME unleash", ("unleash", "sync")),
        base: (f"environment '{ENV}' has no [environments.{ENV}.unleash] table", None),
        base + f'[environments.{ENV}.unleash]\nurl = "http://u/api"\nenvironment = "production"\n'
        'token_env = "T"\ntoken = "default:production.s3cr3t"\n': ("tokens are never read from a file", None),
        base + f'[environments.{ENV}.unleash]\nurl = "http://u/api"\nenvironment = "production"\n': (
            "token_env is missing",
            None,
        ),
        base + f'[environments.{ENV}.unleash]\nurl = "ftp://u"\nenvironment = "production"\ntoken_env = "T"\n': (
            "an http:// or https:// URL",
            None,
        ),
        base + f'[environments.{ENV}.unleash]\nurl = "http://me:pw@u/api"\nenvironment = "production"\n'
        'token_env = "T"\n': ("the URL carries credentials", None),
        base + f'[environments.{ENV}.unleash]\nurl = "http://u/api"\nenvironment = "production"\n'
        'token_env = "UNLEASH_CLIENT_TOKEN"\n': ("the variable UNLEASH_CLIENT_TOKEN is not set", None),
    }
    for text, (expected, args) in cases.items():
        write(project / "sync-admin.toml", text)
        argv = list(args) if args else ["--env", ENV, "unleash", "sync"]
        code, _, err = run_cli(capsys, None, *argv)
        assert code == 2, (text, err)
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert "s3cr3t" not in err and "pw@" not in err
    # With an Unleash table, every other command reads the environment as before.
    write(project / "sync-admin.toml", list(cases)[-1])
    assert run_cli(capsys, None, "--env", ENV, "flag", "status", FLAG)[0] == 0
    assert run_cli(capsys, None, "rollout", "envs")[0] == 0


def test_sentry_gets_what_was_not_applied(conn, capsys, bridge, operator, monkeypatch):
    sentry = SentryEndpoint()
    try:
        monkeypatch.setenv("SENTRY_DSN", f"http://public@127.0.0.1:{sentry.port}/1")
        operator.add_strategy(rollout(30, group="checkout"))
        operator.switch(True)
        operator.wait_served(served_enabled(True), "on")
        assert sync(capsys)[0] == 5
        event = sentry.next_event()
        assert event["fingerprint"] == ["unleash", "not-applied", ENV]
        assert "groupId 'checkout' is not the flag's name" in event["message"]
        assert event["tags"]["flag"] == FLAG
        no_secret(operator, str(event))
    finally:
        sentry.server.shutdown()


# --- the cohort: the database and Unleash's own SDK agree ---------------------------------------------------------

COHORT_IDS = 20_000
ACTORS = (7, 19_999, 20_000, 123_456)
SHARES = (1, 50, 99)


def sdk_serving(client_class, operator, tmp_path: Path, share: int):
    """An initialized UnleashClient whose own fetch already holds the rollout at SHARE %. The server answers each
    query from a cache of its own, refreshed on a tick (about a second): the SDK's query may be answered from an
    older one than the bridge's was. It is asked again (a new client) until its state has the change, at most
    30 s; only then is it compared, so that a disagreement found is one of evaluation, not of timing."""
    deadline = time.monotonic() + 30
    for attempt in range(1, 1000):
        client = client_class(
            url=operator.url,
            app_name=f"billing-sync-cohort-test-{share}-{attempt}",
            custom_headers={"Authorization": operator.client_token},
            disable_metrics=True,
            disable_registration=True,
            cache_directory=str(tmp_path / f"sdk-{share}-{attempt}"),
            refresh_interval=3600,
        )
        client.initialize_client()
        raw = client._cache.get("/client/features")  # the state the SDK evaluates, as it fetched it
        state = json.loads(raw) if isinstance(raw, str | bytes) else raw
        served = next((f for f in (state or {}).get("features", []) if f.get("name") == FLAG), None)
        if served_rollout(share)(served):
            return client
        client.destroy()
        if time.monotonic() > deadline:
            raise AssertionError(f"the SDK's fetch never showed {share} % within 30 s: {served}")
        time.sleep(0.5)
    raise AssertionError("unreachable")


def test_flag_enabled_for_agrees_with_the_unleash_sdk_for_20000_ids(conn, capsys, bridge, operator, tmp_path):
    """For each percentage, with actors: Unleash's Python SDK (UnleashClient) evaluates the live server's flag for
    ids 1-20,000; the database, brought there by the bridge, answers with billing_sync.flag_enabled_for."""
    from UnleashClient import UnleashClient

    percentage = operator.add_strategy(rollout(SHARES[0]))
    operator.add_strategy(user_ids(*ACTORS))
    operator.switch(True)
    mismatches: dict[int, list[int]] = {}
    for share in SHARES:
        operator.update_strategy(percentage, rollout(share))
        operator.wait_served(served_rollout(share), f"{share} %")
        assert sync(capsys)[0] == 0
        assert state(conn) == (True, False, share, sorted(a for a in ACTORS))
        client = sdk_serving(UnleashClient, operator, tmp_path, share)
        try:
            sdk = {i for i in range(1, COHORT_IDS + 1) if client.is_enabled(FLAG, {"userId": str(i)})}
        finally:
            client.destroy()
        database = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM generate_series(1, %s) AS id WHERE billing_sync.flag_enabled_for(%s, id)",
                (COHORT_IDS, FLAG),
            )
        }
        mismatches[share] = sorted(sdk ^ database)
        assert abs(len(database) - COHORT_IDS * share / 100) < COHORT_IDS * 0.02  # the cohort is that share
        assert {7, 19_999, 20_000} <= sdk and {7, 19_999, 20_000} <= database
    assert mismatches == {share: [] for share in SHARES}
