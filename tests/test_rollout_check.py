"""`sync-admin rollout check` (issue 4): the release gates as a checklist, each with its evidence."""

from __future__ import annotations

import pytest
from helpers import FLAG, insert_customer, run_cli


def check(capsys, db_url: str, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, db_url, "rollout", "check", *args)


def lines_by_verdict(out: str) -> dict[str, list[str]]:
    lines = [line.strip() for line in out.splitlines()]
    return {
        "PASS": [line for line in lines if line.startswith("PASS")],
        "FAIL": [line for line in lines if line.startswith("FAIL")],
    }


def days_pass(conn, hours: float) -> None:
    """Move every audit event HOURS into the past, as if that much time had gone by since.

    No role but the owner of billing_sync.feature_flag_events can change it (nothing is granted on it);
    the tests connect as the superuser that owns it, which is the only way to fake a day of waiting.
    """
    conn.execute(
        "UPDATE billing_sync.feature_flag_events SET occurred_at = occurred_at - make_interval(secs => %s)",
        (hours * 3600,),
    )


@pytest.fixture
def released(conn, capsys, db_url) -> list[int]:
    """On for everyone (through sync-admin, so audited), customers synced by the triggers."""
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone", "--reason", "release", "--by", "rita")[0] == 0
    return [insert_customer(conn, f"A{i % 3}", f"c{i}@example.com") for i in range(10)]


def test_all_gates_pass_after_a_day_on_for_everyone(conn, capsys, db_url, released):
    days_pass(conn, 25)

    code, out, err = check(capsys, db_url)

    assert code == 0, err
    verdicts = lines_by_verdict(out)
    assert verdicts["FAIL"] == []
    assert len(verdicts["PASS"]) == 4
    assert out.strip().endswith("ready to release the flag")
    duration = verdicts["PASS"][1]
    assert "on for everyone for at least 24 h without a kill-switch event: 25.0 h, since event #" in duration
    assert "by rita, reason 'release'" in duration
    assert "no drift across 10 customers in the rollout" in out

    code, markdown, _ = check(capsys, db_url, "--format", "markdown")
    assert code == 0
    assert markdown.startswith("#### Rollout check: `account_data_persistence`")
    assert markdown.count("- [x] **") == 4 and "- [ ]" not in markdown
    assert "**Result:** ready to release the flag" in markdown


def test_too_soon_fails_only_the_duration_gate(conn, capsys, db_url, released):
    days_pass(conn, 2)

    code, out, err = check(capsys, db_url)

    assert code == 1
    assert err.strip().splitlines() == ["error: not ready to release the flag: 1 of 4 checks failed"]
    [failed] = lines_by_verdict(out)["FAIL"]
    assert "only 2.0 h, since event #" in failed
    assert check(capsys, db_url, "--min-hours", "2")[0] == 0
    assert check(capsys, db_url, "--min-hours", "0")[0] == 0


def test_a_kill_switch_event_restarts_the_clock(conn, capsys, db_url, released):
    days_pass(conn, 30)
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "INC-7", "--by", "ops")[0] == 0
    assert run_cli(capsys, db_url, "flag", "resume", FLAG, "--reason", "INC-7 fixed", "--by", "ops")[0] == 0
    days_pass(conn, 1)

    code, out, _ = check(capsys, db_url)

    assert code == 1
    [failed] = lines_by_verdict(out)["FAIL"]
    assert "only 1.0 h" in failed
    assert "reason 'INC-7 fixed'" in failed  # when everyone-on began again
    assert "last kill-switch event #" in failed and "by ops, reason 'INC-7'" in failed


def test_a_percentage_rollout_is_not_on_for_everyone(conn, capsys, db_url):
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "50")[0] == 0
    insert_customer(conn, "A1")  # synced by the trigger if its bucket is in the 50 %
    days_pass(conn, 48)

    code, out, _ = check(capsys, db_url)

    assert code == 1
    failed = lines_by_verdict(out)["FAIL"]
    assert len(failed) == 2
    assert (
        f"flag on for everyone: ON, but not for everyone (gates: 50 %): `sync-admin flag enable {FLAG} --everyone`"
        in failed[0]
    )
    assert "not on for everyone now" in failed[1]


def test_kill_switch_off_fails(conn, capsys, db_url, released):
    days_pass(conn, 48)
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "incident")[0] == 0
    code, out, _ = check(capsys, db_url)
    assert code == 1
    assert (
        "FAIL  flag on for everyone: OFF: kill switch pulled (gates kept: everyone);"
        f" `sync-admin flag resume {FLAG}` once it is safe"
    ) in out


def test_drift_fails_with_examples(conn, capsys, db_url, released):
    days_pass(conn, 25)
    conn.execute("DELETE FROM billing_account_memberships WHERE customer_id = ANY(%s)", (released[3:5],))

    code, out, _ = check(capsys, db_url)

    assert code == 1
    [failed] = lines_by_verdict(out)["FAIL"]
    assert failed == (
        f"FAIL  zero drift: missing membership: 2 (e.g. customers {released[3]}, {released[4]});"
        " run `sync-admin backfill`, then check again"
    )
    assert run_cli(capsys, db_url, "backfill")[0] == 0
    assert check(capsys, db_url)[0] == 0


def test_sync_skips_fail(conn, capsys, db_url, released):
    skipped = insert_customer(conn, "two words")
    days_pass(conn, 25)

    code, out, _ = check(capsys, db_url, "--format", "markdown")

    assert code == 1
    assert "- [ ] **no sync skips**: 1 skips recorded since the everyone period began (not_an_account: 1)" in out
    assert "1 customer in the rollout has a zuora_account_id that is not an account" in out
    assert f"e.g. customers {skipped}" in out
    assert "**Result:** not ready to release the flag: 1 of 4 checks failed" in out


def test_a_skip_recorded_during_the_everyone_period_fails_even_once_the_value_is_fixed(conn, capsys, db_url, released):
    skipped = insert_customer(conn, "two words")
    conn.execute("UPDATE customers SET zuora_account_id = 'A1' WHERE id = %s", (skipped,))
    days_pass(conn, 25)

    code, out, _ = check(capsys, db_url)

    assert code == 1
    fails = lines_by_verdict(out)["FAIL"]
    assert len(fails) == 1 and "1 skips recorded since the everyone period began" in fails[0]
    assert "not an account (" not in fails[0]


def test_skips_recorded_before_the_everyone_period_began_do_not_count(conn, capsys, db_url, released):
    skipped = insert_customer(conn, "two words")
    conn.execute("UPDATE customers SET zuora_account_id = 'A1' WHERE id = %s", (skipped,))
    conn.execute("UPDATE billing_sync.sync_events SET occurred_at = occurred_at - interval '30 hours'")
    days_pass(conn, 25)

    code, out, _ = check(capsys, db_url)

    assert code == 0, out
    assert "no skip recorded since the everyone period began" in out


def test_a_contended_skip_counts_until_the_repair_has_done_its_customer(conn, capsys, db_url, connect, released):
    """Contention is how the sync avoids waiting; the repair closes it. Until then it blocks the release."""
    creator = connect(autocommit=False)
    insert_customer(creator, "NEW-1")  # holds the claim on NEW-1
    contended = insert_customer(conn, "NEW-1")
    creator.commit()
    days_pass(conn, 25)

    code, out, _ = check(capsys, db_url)
    assert code == 1
    assert "1 skips recorded since the everyone period began (account_contended: 1)" in out

    assert conn.execute("SELECT still_queued FROM billing_sync.repair_queued(100)").fetchone() == (0,)
    code, out, _ = check(capsys, db_url)
    assert code == 0, out
    assert conn.execute(
        "SELECT count(*) FROM billing_account_memberships WHERE customer_id = %s", (contended,)
    ).fetchone() == (1,)


@pytest.mark.parametrize("args", [["--min-hours", "-1"], ["--min-hours", "a day"], ["--format", "xml"]])
def test_bad_input_exits_2_with_one_line(conn, capsys, db_url, args):
    code, out, err = check(capsys, db_url, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err


def test_a_percentage_change_before_everyone_is_not_called_a_kill_switch_event(conn, capsys, db_url):
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "10")[0] == 0
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "50", "--by", "rita")[0] == 0
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
    code, out, _ = check(capsys, db_url)
    assert code == 1
    duration = next(line for line in out.splitlines() if "on for everyone for at least" in line)
    assert "last rollout change (before everyone) event #" in duration and "by rita" in duration
    assert "kill-switch event #" not in duration and "gate-off" not in duration
    assert "check again after " in duration  # the next step
