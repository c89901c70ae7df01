"""`sync-admin errors` (counts per reason, latest examples) and `sync-admin events prune` (retention)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from helpers import flag_on, insert_customer, run_cli

from sync_admin import durations, events


def record_old(conn, count: int, age: str, reason: str = "not_an_account") -> None:
    """Events as the trigger writes them, dated back by `age` (an interval)."""
    conn.execute(
        "INSERT INTO billing_sync.sync_events"
        " (occurred_at, customer_id, operation, reason, value, value_length, transaction_id)"
        " SELECT now() - %s::interval, g, 'UPDATE', %s, 'old ' || g, 5, 1 FROM generate_series(1, %s) g",
        (age, reason, count),
    )


def event_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM billing_sync.sync_events").fetchone()[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
     ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), (" 7D ", timedelta(days=7))],
)  # fmt: skip
def test_durations_parse(text, expected):
    assert durations.parse(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-5m", "1.5h", "30x", "1 hour", "30dd", "1234567d", "⁵d"])
def test_bad_durations_are_refused(text):
    with pytest.raises(durations.BadInput):
        durations.parse(text)


def test_errors_counts_per_reason_with_the_latest_examples(conn, capsys, db_url):
    flag_on(conn)
    first = insert_customer(conn, "bad one")
    second = insert_customer(conn, "bad\ttwo\u202e")
    conn.execute("UPDATE public.customers SET zuora_account_id = 'still bad' WHERE id = %s", (first,))
    record_old(conn, 2, "1 hour", reason="account_contended")
    record_old(conn, 5, "3 days")  # outside the default 24h
    code, out, err = run_cli(capsys, db_url, "errors", "--examples", "2")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].endswith("(last 1d): 5 events")
    assert lines[1].startswith("  not_an_account: 3 events, 2 customers, last at ")
    assert f"customer {first} UPDATE value 'still bad' (9 chars)" in lines[2]  # newest first
    assert f"customer {second} INSERT value 'bad\\x09two\\u202e' (8 chars)" in lines[3]
    assert lines[4].startswith("  account_contended: 2 events, 2 customers")
    assert len(lines) == 7


def test_errors_since_and_json(conn, capsys, db_url):
    record_old(conn, 2, "2 hours")
    record_old(conn, 4, "10 days", reason="account_unresolved")
    code, out, _ = run_cli(capsys, db_url, "errors", "--since", "1h")
    assert code == 0 and out.splitlines() == [out.splitlines()[0]] and out.strip().endswith("0 events, none")
    code, out, _ = run_cli(capsys, db_url, "errors", "--since", "30d", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["events"] == 6
    assert [(r["reason"], r["events"], len(r["examples"])) for r in report["reasons"]] == [
        ("account_unresolved", 4, 3),
        ("not_an_account", 2, 2),
    ]
    example = report["reasons"][0]["examples"][0]
    assert set(example) >= {"occurred_at", "customer_id", "reason", "value", "value_length", "transaction_id"}
    assert report["reasons"][0]["description"] == events.REASONS["account_unresolved"]


def test_prune_deletes_only_events_older_than_the_cutoff(conn, capsys, db_url):
    record_old(conn, 3, "40 days")
    record_old(conn, 2, "29 days")
    code, out, _ = run_cli(capsys, db_url, "events", "prune", "--older-than", "30d", "--dry-run")
    assert code == 0 and out.startswith("would delete 3 events older than 30d (recorded before ")
    assert event_count(conn) == 5
    code, out, _ = run_cli(capsys, db_url, "events", "prune", "--older-than", "30d")
    assert code == 0 and out.startswith("deleted 3 events older than 30d")
    assert event_count(conn) == 2
    code, out, _ = run_cli(capsys, db_url, "events", "prune", "--older-than", "90m")
    assert out.startswith("deleted 2 events older than 90m")
    assert event_count(conn) == 0


def test_prune_works_through_a_large_table_in_batches(conn, capsys, db_url, monkeypatch):
    monkeypatch.setattr(events, "PRUNE_BATCH", 1_000)
    record_old(conn, 4_500, "2 days")
    record_old(conn, 10, "1 minute")
    code, out, _ = run_cli(capsys, db_url, "events", "prune", "--older-than", "1d")
    assert code == 0 and out.startswith("deleted 4500 events")
    assert event_count(conn) == 10


@pytest.mark.parametrize(
    "args",
    [
        ["events", "prune", "--older-than", "30"],
        ["events", "prune", "--older-than", "0d"],
        ["events", "prune", "--older-than", "thirty days"],
        ["events", "prune", "--older-than", "-1d"],
        ["events", "prune"],
        ["errors", "--since", "1y"],
        ["errors", "--since", ""],
        ["errors", "--format", "xml"],
        ["errors", "--examples", "-1"],
    ],
)
def test_bad_input_exits_2_with_one_line_and_deletes_nothing(conn, capsys, db_url, args):
    record_old(conn, 3, "40 days")
    code, out, err = run_cli(capsys, db_url, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert event_count(conn) == 3


def test_a_database_without_the_events_table_is_told_to_upgrade(capsys, db_url):
    assert run_cli(capsys, db_url, "db", "downgrade", "0003", "--yes")[0] == 0
    for args in (["errors"], ["events", "prune", "--older-than", "30d"]):
        code, _, err = run_cli(capsys, db_url, *args)
        assert code == 3 and "sync-admin db upgrade" in err
