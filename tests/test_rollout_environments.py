"""The rollout across environments (issue 13): `rollout status` side by side, the staging gate of
`rollout check --env production`, and the rollout issue's checklist (`rollout report`).

Staging and production are two clones of the migrated template on the suite's server: staging reached through
a variable (url_env), production through a libpq service (pg_service.conf).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from envtools import database_factory, days_pass, isolate, password_to_pgpass, service_file, write
from helpers import FLAG, run_cli
from pgtools import fresh_database

from sync_admin import db

SECRET = "Sw0rdf1sh-7171"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
EXPECTED = Path(__file__).parent / "expected"
CONFIG = """\
[environments.production]
service = "billing_production"

[environments.staging]
url_env = "STAGING_DATABASE_URL"

[rollout]
order = ["staging", "production"]
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    return isolate(tmp_path, monkeypatch)


@pytest.fixture
def envs(project, tmp_path, conn, db_url, postgresql_noproc, monkeypatch):
    """{"staging": url, "production": url}, configured in ./sync-admin.toml."""
    with database_factory(conn, db_url, postgresql_noproc.template_dbname) as make:
        urls = {"staging": make("staging"), "production": make("production")}
        monkeypatch.setenv("STAGING_DATABASE_URL", urls["staging"])
        production = password_to_pgpass(urls["production"], monkeypatch, tmp_path)  # a server that asks for one
        services = service_file(tmp_path / "pg_service.conf", {"billing_production": production})
        monkeypatch.setenv("PGSERVICEFILE", str(services))
        write(project / "sync-admin.toml", CONFIG)
        yield urls


def sa(capsys, *args: str) -> tuple[int, str, str]:
    code, out, err = run_cli(capsys, None, *args)
    assert "Traceback" not in out + err
    return code, out, err


def ok(capsys, *args: str) -> str:
    code, out, err = sa(capsys, *args)
    assert (code, err) == (0, ""), (args, out, err)
    return out


def customers(url: str, accounts: list[str | None]) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            conn.execute(
                "INSERT INTO public.customers (email, zuora_account_id) VALUES (%s, %s) RETURNING id",
                (f"c{index}@example.com", account),
            ).fetchone()[0]
            for index, account in enumerate(accounts)
        ]


def sql(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def unreachable_too(project: Path, monkeypatch) -> None:
    """A third environment whose server is down (its URL, with a password, in a variable)."""
    monkeypatch.setenv("DR_DATABASE_URL", UNREACHABLE)
    write(project / "sync-admin.toml", CONFIG + '\n[environments.dr]\nurl_env = "DR_DATABASE_URL"\n')


# --- rollout status ---------------------------------------------------------------------------------------


def test_status_shows_every_environment_side_by_side(envs, capsys, project, monkeypatch):
    ok(capsys, "--env", "staging", "flag", "enable", FLAG, "--everyone", "--by", "alice", "--reason", "staging")
    staged = customers(envs["staging"], ["A1", "A1", "A2", "two words"])  # the last is a recorded skip
    sql(envs["staging"], f"DELETE FROM public.billing_account_memberships WHERE customer_id = {staged[0]}")  # drift
    produced = customers(envs["production"], [f"P{i % 4}" for i in range(20)])
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--actor", str(produced[0]), "--by", "bob")
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--percentage", "50", "--by", "carol", "--reason", "50")
    ok(capsys, "--env", "production", "backfill", "--by", "dave")

    text = ok(capsys, "rollout", "status")
    header = next(line for line in text.splitlines() if "staging" in line)
    assert header.index("staging") < header.index("production")  # the rollout's order, not the file's
    for aspect in ("state", "cohort", "since", "drift", "skips (24 h)", "backfill", "last change"):
        assert aspect in text
    assert "ON for everyone (4 customers)" in text
    assert "alice" in text and "carol" in text and "never run" in text

    [staging, production] = json.loads(ok(capsys, "rollout", "status", "--format", "json"))
    assert staging["environment"] == "staging" and staging["reachable"] is True
    assert staging["source"] == f"$STAGING_DATABASE_URL = {db.mask(envs['staging'])}"  # its password masked
    assert staging["state"] == "ON for everyone (4 customers)"
    assert staging["drift"]["clean"] is False and staging["drift"]["missing_membership"] == 1
    assert staging["skips"]["events"] == 1 and staging["skips"]["reasons"][0]["reason"] == "not_an_account"
    assert staging["last_change"]["actor"] == "alice" and staging["backfill"] is None
    assert production["source"] == "service billing_production (pg_service.conf)"
    assert production["state"].startswith("ON for ") and production["state"].endswith(" (50 %, 1 actor)")
    assert production["flag"] == {"enabled": True, "everyone": False, "percentage": 50, "actors": 1, "pulled": False}
    assert production["last_change"]["actor"] == "carol" and production["last_change"]["reason"] == "50"
    assert production["drift"]["clean"] is True and production["customers"] == 20
    assert production["backfill"]["status"] == "finished" and production["backfill"]["actor"] == "dave"
    assert production["released"] is None

    # --env narrows it to one
    [only] = json.loads(ok(capsys, "--env", "production", "rollout", "status", "--format", "json"))
    assert only["environment"] == "production"


def test_status_names_an_environment_that_cannot_be_reached_and_exits_1(envs, capsys, project, monkeypatch):
    unreachable_too(project, monkeypatch)
    for fmt in ("text", "json"):
        code, out, err = sa(capsys, "rollout", "status", "--format", fmt)
        assert code == 1, (out, err)
        assert err.strip().splitlines() == ["error: 1 of 3 environments cannot be reached: dr"]
        assert SECRET not in out + err
        if fmt == "json":
            dr = json.loads(out)[2]
            assert (dr["environment"], dr["reachable"]) == ("dr", False)
            assert dr["error"].startswith("cannot connect to postgresql://u:***@127.0.0.1:1/x: ")
        else:
            assert "CANNOT BE REACHED" in out
            [line] = [line for line in out.splitlines() if line.startswith("dr ")]
            assert line.startswith("dr cannot be reached: cannot connect to postgresql://u:***@127.0.0.1:1/x: ")

    # a variable that is not set is a reason too
    monkeypatch.delenv("DR_DATABASE_URL")
    code, out, _ = sa(capsys, "rollout", "status")
    assert code == 1 and "dr cannot be reached: " in out and "the variable DR_DATABASE_URL is not set" in out


def test_status_names_an_environment_that_is_not_migrated(envs, capsys, project, conn, db_url, monkeypatch):
    with fresh_database(conn, db_url) as empty:
        monkeypatch.setenv("QA_DATABASE_URL", empty)
        write(project / "sync-admin.toml", CONFIG + '\n[environments.qa]\nurl_env = "QA_DATABASE_URL"\n')
        code, out, err = sa(capsys, "rollout", "status")
    assert code == 1 and err.strip() == "error: 1 of 3 environments cannot be reached: qa"
    assert "qa cannot be reached: the database is not migrated; run `sync-admin db upgrade` first" in out


def test_status_without_configuration_shows_the_one_database_as_default(project, capsys, db_url):
    code, out, err = run_cli(capsys, db_url, "rollout", "status", "--format", "json")
    assert (code, err) == (0, "")
    [default] = json.loads(out)
    assert default["environment"] == "default" and default["state"] == "OFF: no gate set"
    code, out, _ = run_cli(capsys, db_url, "rollout", "status")
    assert code == 0 and "default" in out and "OFF: no gate set" in out


# --- rollout check --env production: the staging gate ------------------------------------------------------


def gate_line(out: str) -> str:
    [line] = [line.strip() for line in out.splitlines() if "staging gate (staging)" in line]
    return line


def test_check_of_production_fails_on_the_staging_gate_until_staging_had_its_day(envs, capsys):
    for env in ("staging", "production"):
        ok(capsys, "--env", env, "flag", "enable", FLAG, "--everyone", "--by", f"{env}-owner")
        customers(envs[env], ["A1", "A2", None])
    days_pass(envs["production"], 30)

    code, out, err = sa(capsys, "--env", "production", "rollout", "check")
    assert code == 1
    assert err.strip() == "error: not ready to release the flag: 1 of 5 checks failed"
    line = gate_line(out)
    assert line.startswith("FAIL  staging gate (staging): rollout check failed (1 of 4): on for everyone for at least")
    assert "only 0.0 h" in line and "(run them with `sync-admin --env staging ...`)" in line
    assert [row for row in out.splitlines() if row.strip().startswith("FAIL")] == [out.splitlines()[1]]  # first

    days_pass(envs["staging"], 48)
    out = ok(capsys, "--env", "production", "rollout", "check")
    line = gate_line(out)
    assert line.startswith("PASS  staging gate (staging): rollout check passed: ON for everyone; 48.0 h, since event #")
    assert "by staging-owner" in line and "no drift across 3 customers in the rollout" in line
    assert out.strip().endswith("ready to release the flag")

    markdown = ok(capsys, "--env", "production", "rollout", "check", "--format", "markdown")
    assert "- [x] **staging gate (staging)**: rollout check passed" in markdown
    checks = json.loads(ok(capsys, "--env", "production", "rollout", "check", "--format", "json"))["checks"]
    assert checks[0]["name"] == "staging gate (staging)" and checks[0]["passed"] is True

    # staging is first in the rollout: no gate of its own; without --env nothing changes either
    assert "staging gate" not in ok(capsys, "--env", "staging", "rollout", "check")
    assert "staging gate" not in run_cli(capsys, envs["production"], "rollout", "check")[1]


def test_a_staging_environment_that_cannot_be_reached_fails_the_gate(envs, capsys, monkeypatch):
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--everyone")
    days_pass(envs["production"], 30)
    monkeypatch.setenv("STAGING_DATABASE_URL", UNREACHABLE)

    code, out, err = sa(capsys, "--env", "production", "rollout", "check")

    assert code == 1 and err.strip() == "error: not ready to release the flag: 1 of 5 checks failed"
    line = gate_line(out)
    assert line.startswith(
        "FAIL  staging gate (staging): staging cannot be checked: cannot connect to postgresql://u:***@127.0.0.1:1/x: "
    )
    assert SECRET not in out + err

    monkeypatch.delenv("STAGING_DATABASE_URL")
    code, out, _ = sa(capsys, "--env", "production", "rollout", "check")
    assert code == 1 and "staging cannot be checked: " in gate_line(out) and "STAGING_DATABASE_URL is not set" in out


# --- rollout report ----------------------------------------------------------------------------------------


def normalized(markdown: str) -> str:
    """The report without what changes from run to run: moments, durations, customer ids."""
    markdown = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<when>", markdown)
    markdown = re.sub(r"\bcustomer \d+", "customer <id>", markdown)
    return re.sub(r"\d+\.\d h\b", "<hours> h", markdown)


def the_rollout_so_far(envs: dict[str, str], capsys) -> None:
    """Staging on for everyone and verified; production through testing customers, 10 %, 50 % to everyone."""
    ok(capsys, "--env", "staging", "flag", "enable", FLAG, "--everyone", "--by", "alice", "--reason", "staging")
    customers(envs["staging"], ["S1", "S2"])
    days_pass(envs["staging"], 72)
    first, second, *_ = customers(envs["production"], ["P1", "P1", "P2", None, "P3"])
    ok(
        capsys,
        "--env",
        "production",
        "flag",
        "enable",
        FLAG,
        "--actor",
        str(first),
        "--actor",
        str(second),
        "--by",
        "bob",
    )
    days_pass(envs["production"], 10)
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--percentage", "10", "--by", "carol")
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--percentage", "50", "--by", "carol")
    days_pass(envs["production"], 10)
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--everyone", "--by", "dave", "--reason", "global")
    ok(capsys, "--env", "production", "backfill", "--by", "dave")


def test_the_report_ticks_each_item_from_the_audit_logs(envs, capsys):
    ok(capsys, "--env", "staging", "flag", "enable", FLAG, "--percentage", "5", "--by", "alice")
    early = ok(capsys, "rollout", "report", "--format", "text")
    assert "[ ] staging: enabled and verified (not on for everyone: ON for 0 customers (5 %))" in early
    assert "[ ] production: testing customers (no actor added yet)" in early
    assert "[ ] production: release (not released yet)" in early

    the_rollout_so_far(envs, capsys)
    markdown = ok(capsys, "rollout", "report")  # markdown by default
    expected = (EXPECTED / "rollout_report_verification_pending.md").read_text()
    assert normalized(markdown) == expected

    days_pass(envs["production"], 24)
    markdown = ok(capsys, "rollout", "report", "--format", "markdown")
    assert (
        "- [x] production: verification day (rollout check passed: on for everyone 24.0 h (at least 24 h)" in markdown
    )
    report = json.loads(ok(capsys, "rollout", "report", "--format", "json"))
    assert report["environments"] == ["staging", "production"] and report["done"] is False
    assert [item["done"] for item in report["items"]] == [True, True, True, True, True, False]
    assert report["items"][1]["by"] == "bob" and report["items"][3]["by"] == "dave"

    # --env staging: the checklist up to staging only (nothing before it)
    staging_only = ok(capsys, "--env", "staging", "rollout", "report", "--format", "text")
    assert "enabled and verified" not in staging_only and "[x] staging: global (on for everyone since" in staging_only


def test_the_report_says_which_environment_cannot_be_reached(envs, capsys, monkeypatch):
    monkeypatch.setenv("STAGING_DATABASE_URL", UNREACHABLE)
    code, out, err = sa(capsys, "rollout", "report")
    assert code == 1 and err.strip() == "error: 1 of 2 environments cannot be reached: staging"
    assert "- [ ] staging: enabled and verified (cannot be reached: cannot connect to postgresql://u:***@" in out
    assert SECRET not in out + err


# --- after the release: the flag row is gone, its history stays ----------------------------------------------


def test_after_the_release_status_and_report_read_the_release_and_the_history(envs, capsys):
    the_rollout_so_far(envs, capsys)
    days_pass(envs["production"], 25)
    ok(capsys, "--env", "production", "db", "upgrade", "--by", "erin", "--reason", "CHG-1")

    [_, production] = json.loads(ok(capsys, "rollout", "status", "--format", "json"))
    assert re.fullmatch(r"released \d{4}-\d\d-\d\d \d\d:\d\d UTC by erin", production["state"]), production
    assert production["flag"] is None and production["drift"]["clean"] is True  # the sync still keeps them up to date
    assert production["in_rollout"] == production["customers"] == 5
    assert (production["released"]["actor"], production["released"]["reason"]) == ("erin", "CHG-1")
    assert production["released"]["overridden"] is False
    assert production["backfill"]["actor"] == "dave"
    assert "released " in ok(capsys, "rollout", "status")

    markdown = normalized(ok(capsys, "rollout", "report"))
    assert "- [x] production: global (on for everyone since <when> by dave until its release <when>)" in markdown
    assert "- [x] production: verification day (the rollout check passed at its release <when>)" in markdown
    assert "- [x] production: release (released <when> by erin (CHG-1): the flag retired by revision 0013)" in markdown
    assert "- [ ]" not in markdown

    # a released staging passes the gate of the next environment
    days_pass(envs["staging"], 1)
    ok(capsys, "--env", "staging", "db", "upgrade", "--by", "erin")
    [staging, _] = json.loads(ok(capsys, "rollout", "status", "--format", "json"))
    assert staging["state"].startswith("released ")
    assert "- [x] staging: enabled and verified (released <when> by erin)" in normalized(
        ok(capsys, "rollout", "report")
    )
    gate = gate_line(ok(capsys, "--env", "production", "rollout", "check"))
    assert re.fullmatch(
        r"PASS  staging gate \(staging\): released there \S+ \S+ UTC by erin, its rollout check passed", gate
    ), gate


def test_a_staging_release_that_overrode_its_check_does_not_pass_the_gate(envs, capsys):
    ok(capsys, "--env", "staging", "flag", "enable", FLAG, "--percentage", "10")
    ok(capsys, "--env", "staging", "db", "upgrade", "--release-override", "INC-5 hotfix", "--by", "erin")
    ok(capsys, "--env", "production", "flag", "enable", FLAG, "--everyone")
    days_pass(envs["production"], 30)

    code, out, _ = sa(capsys, "--env", "production", "rollout", "check")

    assert code == 1
    assert re.fullmatch(
        r"FAIL  staging gate \(staging\): released there \S+ \S+ UTC by erin, with its rollout check overridden",
        gate_line(out),
    ), out
    report = normalized(ok(capsys, "rollout", "report"))
    assert "- [ ] staging: enabled and verified (released <when> by erin with its rollout check overridden)" in report
