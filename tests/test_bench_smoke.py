"""The benchmark suite (`python -m bench`, docs/benchmarks.md) runs end to end with tiny sizes.

Against the test server; one round of everything, pgbench runs of 200 transactions a client, 2,000 customers.
Only the outputs are checked (files exist, the JSON and the table are well-formed, every scenario measured, no
database left behind): timings on a shared machine prove nothing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from sync_admin import db

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "flag_off_insert",
    "flag_off_update",
    "unrelated_update",
    "zuora_change_vs_app",
    "insert_vs_app",
    "gate_50_vs_everyone",
    "bulk_update",
    "bulk_insert",
    "bulk_unrelated_update",
    "released_update_vs_flag_on",
    "released_insert_vs_flag_on",
    "released_update_vs_app",
    "released_insert_vs_app",
    "released_unrelated_update",
    "released_bulk_update_vs_flag_on",
    "released_bulk_insert_vs_flag_on",
    "released_bulk_update",
    "released_bulk_insert",
}


def server_url(pg_server) -> str:
    return db.make_url(
        host=pg_server.host,
        port=pg_server.port,
        user=pg_server.user,
        password=pg_server.password,
        dbname=pg_server.maintenance_dbname,
    )


@pytest.mark.slow(44)
def test_suite_writes_its_results(pg_server, tmp_path):
    url = server_url(pg_server)
    results = tmp_path / "results"
    prefix = f"bench_smoke_{uuid.uuid4().hex[:8]}"
    args = ["--database-url", url, "--results", str(results), "--prefix", prefix]
    args += ["--customers", "2000", "--bulk-rows", "2000", "--new-accounts", "10"]
    args += ["--rounds", "1", "--bulk-rounds", "1", "--transactions", "200"]
    run = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    with psycopg.connect(url, autocommit=True) as conn:
        left = conn.execute("SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s", (prefix + "%",))
        assert left.fetchall() == [], "the suite left databases behind"

    document = json.loads((results / "results.json").read_text())
    assert {s["name"] for s in document["scenarios"]} == SCENARIOS
    for scenario in document["scenarios"]:
        assert scenario["errors"] == [], scenario
        assert len(scenario["ratios"]) == 1 and scenario["ratios"][0] > 0
        assert scenario["median"] == scenario["ratios"][0]
        assert scenario["met"] in (True, False, None)
    assert "PostgreSQL" in document["server"] and "cores" in document["machine"]
    assert document["xids"]["sync_update"] and document["xids"]["sync_insert"]
    assert document["many_new_accounts"]["rows"] == 2000

    table = (results / "results.md").read_text()
    assert "| scenario | median ratio | min-max | target | met? |" in table
    assert table.count("\n| ") == len(SCENARIOS) + 2  # header, separator, one line per scenario

    chart = results / "ratios.png"
    if importlib.util.find_spec("matplotlib") is not None:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not chart.exists()


def test_the_floor_calibration_still_installs_over_head(conn):
    """`--design floor` (bench/designs/floor, the calibration the flag-off figures are read against) installs over
    the migrated schema as the suite installs it; no pgbench here (the suite's run above covers the measuring)."""
    from bench.suite import config, databases

    databases.install_design(conn, config.DESIGNS_DIR / "floor")
    calling_noop = {
        name
        for (name,) in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.customers'::regclass"
            " AND tgfoid = 'billing_sync.sync_noop()'::regprocedure"
        )
    }
    assert calling_noop == {"billing_sync_customer_insert", "billing_sync_customer_update"}


def test_row_cost_reports_every_step_and_puts_the_function_back(pg_server):
    url = server_url(pg_server)
    name = f"bench_smoke_rows_{uuid.uuid4().hex[:8]}"
    args = ["--database-url", url, "--database", name, "--customers", "200", "--rows", "50", "--rounds", "1"]
    run = subprocess.run(
        [sys.executable, "bench/row_cost.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| none", "| entry", "| lookup", "| delete", "| full"]
    with psycopg.connect(url, autocommit=True) as conn:
        left = conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (name,)).fetchall()
    assert left == [], "row_cost left its database behind"


def test_row_cost_keeps_the_installed_function(pg_server):
    """--keep leaves the database: the function there is the installed one again, the trigger enabled, and every
    customer in the derived state. Three rounds: the rotation ends on a cut version (`entry`), which only the restore
    at the end replaces."""
    url = server_url(pg_server)
    name = f"bench_smoke_rows_{uuid.uuid4().hex[:8]}"
    args = ["--database-url", url, "--database", name, "--customers", "100", "--rows", "20", "--rounds", "3", "--keep"]
    run = subprocess.run(
        [sys.executable, "bench/row_cost.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    kept = db.with_database(url, name)
    try:
        with psycopg.connect(kept, autocommit=True) as conn:
            body = conn.execute(
                "SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = 'billing_sync.sync_customer_updated()'::regprocedure"
            ).fetchone()[0]
            enabled = conn.execute(
                "SELECT tgenabled FROM pg_catalog.pg_trigger WHERE tgname = 'billing_sync_customer_update'"
            ).fetchone()[0]
            drift = conn.execute("SELECT cardinality(billing_sync.drifted_customers(1000))").fetchone()[0]
        assert body.count("RETURN NULL;") == (ROOT / "sql/functions/sync_customer_updated_v3.sql").read_text().count(
            "RETURN NULL;"
        )
        assert enabled == "O"
        assert drift == 0
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.slow(12)
def test_scale_heal_alone_reports_each_size_and_drops_its_databases(pg_server, tmp_path):
    url = server_url(pg_server)
    prefix = f"bench_smoke_heal_{uuid.uuid4().hex[:8]}"
    args = ["--database-url", url, "--only", "heal", "--customers", "300,600", "--heal-rounds", "2", "--repair-percent",
            "10", "--prefix", prefix, "--results", str(tmp_path)]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "bench/scale.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith(("| 300 |", "| 600 |"))]
    assert [row[1] for row in rows] == ["2", "2"], run.stdout
    assert "heal: median at 600 / median at 300:" in run.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    queued = {
        size: [m["units"] for r in results["heal"][size] for m in r if m["command"] == "heal"]
        for size in results["heal"]
    }
    assert len(queued["300"]) == len(queued["600"]) == 2 and 0 < queued["300"][0] < queued["600"][0], queued
    with psycopg.connect(url, autocommit=True) as conn:
        left = conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall()
    assert left == [], "scale.py left its databases behind"
