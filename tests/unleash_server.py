"""A real Unleash server (unleash-server from the npm registry, pinned by tests/unleash/package-lock.json) for the
tests and the benchmark of the Unleash bridge, and an operator's clicks on it through its admin API.

The server runs on its own database of the PostgreSQL under test, with tokens made up for the run; it is started
once (node tests/unleash/server.mjs), waited for (/health), and stopped with SIGTERM. Installing it is CI's job
(`npm ci --prefix tests/unleash`): when node_modules is missing the fixture fails with the one line that says so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent / "unleash"
PACKAGE = HERE / "node_modules" / "unleash-server" / "package.json"
INSTALL = "npm ci --prefix tests/unleash"
START_SECONDS = 180  # first start runs ~400 migrations: 10-20 s on 2 idle cores, more beside a busy suite
ENVIRONMENT = "production"
OTHER_ENVIRONMENT = "development"
PROJECT = "default"
FLAG = "account_data_persistence"
# Variables of the test process that must not reach node: its own database comes from DATABASE_* alone.
_NOT_INHERITED = ("DATABASE_URL", "DATABASE_URL_FILE", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


class NotInstalled(Exception):
    """node_modules is missing: the fixture fails with this one line."""


def missing_install() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: the Unleash tests need node 20 or newer on PATH"
    if not PACKAGE.is_file():
        return f"unleash-server is not installed: run `{INSTALL}` (the Unleash tests use the real server)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class UnleashServer:
    """One unleash-server process on database DBNAME of the server PG (host, port, user, password)."""

    def __init__(self, pg: Any, log_dir: Path) -> None:
        self.pg = pg
        self.dbname = f"unleash_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.admin_token = f"*:*.{secrets.token_hex(16)}"
        self.client_token = f"{PROJECT}:{ENVIRONMENT}.{secrets.token_hex(16)}"
        self.other_client_token = f"{PROJECT}:{OTHER_ENVIRONMENT}.{secrets.token_hex(16)}"
        self.log = log_dir / "unleash-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    # --- the process ------------------------------------------------------------------------------------------

    def create_database(self) -> None:
        with psycopg.connect(self._maintenance_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))

    def drop_database(self) -> None:
        with psycopg.connect(self._maintenance_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.dbname)))

    def _maintenance_url(self) -> str:
        from sync_admin import db

        return db.make_url(
            host=self.pg.host,
            port=self.pg.port,
            user=self.pg.user,
            password=self.pg.password,
            dbname=self.pg.maintenance_dbname,
        )

    def start(self) -> None:
        """Start the server and wait for /health; RuntimeError with the log's tail when it does not come up."""
        environment = {key: value for key, value in os.environ.items() if key not in _NOT_INHERITED}
        environment |= {
            "DATABASE_HOST": str(self.pg.host),
            "DATABASE_PORT": str(self.pg.port),
            "DATABASE_USERNAME": str(self.pg.user),
            "DATABASE_PASSWORD": self.pg.password or "",
            "DATABASE_NAME": self.dbname,
            "DATABASE_SSL": "false",
            "HTTP_PORT": str(self.port),
            "HTTP_HOST": "127.0.0.1",
            "INIT_ADMIN_API_TOKENS": self.admin_token,
            "INIT_CLIENT_API_TOKENS": f"{self.client_token},{self.other_client_token}",
            "CHECK_VERSION": "false",
            "SEND_TELEMETRY": "false",
            "LOG_LEVEL": "warn",
            "NODE_ENV": "production",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["node", str(HERE / "server.mjs")],
                cwd=HERE,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the test run reaches it through stop(), once
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"unleash-server exited with {self.process.returncode}: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"unleash-server did not answer /health within {START_SECONDS}s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                return json.loads(answer.read()).get("health") == "GOOD"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """SIGTERM (it stops in 1-2 s); SIGKILL if it has not after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    # --- the admin API, as an operator's clicks -----------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """One admin API call (path after /api); its JSON answer, or None. AssertionError on any non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": token or self.admin_token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        return json.loads(text) if text.strip() else None

    def feature_path(self, flag: str = FLAG) -> str:
        return f"/admin/projects/{PROJECT}/features/{flag}"

    def strategies_path(self, environment: str = ENVIRONMENT, flag: str = FLAG) -> str:
        return f"{self.feature_path(flag)}/environments/{environment}/strategies"

    def reset(self, flag: str = FLAG) -> None:
        """The flag as new: there (revived if archived), off in every environment, no strategy, no variant."""
        try:
            feature = self.admin("GET", self.feature_path(flag))
        except AssertionError:  # archived (revived), or never made (created)
            try:
                self.admin("POST", f"/admin/archive/revive/{flag}")
            except AssertionError:
                self.admin("POST", f"/admin/projects/{PROJECT}/features", {"name": flag, "type": "release"})
            feature = self.admin("GET", self.feature_path(flag))
        for environment in feature.get("environments", []):
            name = environment["name"]
            if environment.get("enabled"):
                self.switch(False, name, flag)
            for strategy in environment.get("strategies", []):
                self.admin("DELETE", f"{self.strategies_path(name, flag)}/{strategy['id']}")
            if environment.get("variants"):
                self.admin("PUT", f"{self.feature_path(flag)}/environments/{name}/variants", [])

    def switch(self, on: bool, environment: str = ENVIRONMENT, flag: str = FLAG) -> None:
        """The environment's toggle on the flag page."""
        self.admin("POST", f"{self.feature_path(flag)}/environments/{environment}/{'on' if on else 'off'}")

    def add_strategy(self, strategy: dict[str, Any], environment: str = ENVIRONMENT, flag: str = FLAG) -> str:
        """Add a strategy (its id)."""
        return self.admin("POST", self.strategies_path(environment, flag), strategy)["id"]

    def update_strategy(
        self, strategy_id: str, strategy: dict[str, Any], environment: str = ENVIRONMENT, flag: str = FLAG
    ) -> None:
        self.admin("PUT", f"{self.strategies_path(environment, flag)}/{strategy_id}", strategy)

    def delete_strategy(self, strategy_id: str, environment: str = ENVIRONMENT, flag: str = FLAG) -> None:
        self.admin("DELETE", f"{self.strategies_path(environment, flag)}/{strategy_id}")

    def archive(self, flag: str = FLAG) -> None:
        self.admin("DELETE", self.feature_path(flag))

    def environment_enabled(self, environment: str = ENVIRONMENT, flag: str = FLAG) -> bool:
        feature = self.admin("GET", self.feature_path(flag))
        return next(e["enabled"] for e in feature["environments"] if e["name"] == environment)

    def client_features(self, token: str | None = None, name_prefix: str | None = None) -> dict[str, Any]:
        query = f"?namePrefix={name_prefix}" if name_prefix else ""
        request = urllib.request.Request(
            f"{self.url}/client/features{query}", headers={"Authorization": token or self.client_token}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def wait_served(self, predicate: Any, what: str, flag: str = FLAG, timeout: float = 30) -> None:
        """Wait until the client API serves FLAG as PREDICATE(feature or None) wants: Unleash publishes a change
        to its client API about a second after the admin call."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            features = {f["name"]: f for f in self.client_features()["features"]}
            if predicate(features.get(flag)):
                return
            time.sleep(0.05)
        raise AssertionError(f"Unleash never served {flag} as {what}")


def rollout(percentage: int, *, group: str = FLAG, stickiness: str = "default", constraints: Any = ()) -> dict:
    """A flexibleRollout strategy as the UI makes it."""
    return {
        "name": "flexibleRollout",
        "constraints": list(constraints),
        "parameters": {"rollout": str(percentage), "stickiness": stickiness, "groupId": group},
    }


def user_ids(*ids: int) -> dict:
    """The current way to target ids: a 100 % rollout with a `userId IN` constraint."""
    return rollout(100, constraints=[{"contextName": "userId", "operator": "IN", "values": [str(i) for i in ids]}])
