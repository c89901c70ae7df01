"""`sync-admin verify` (issue 4): derived state against the billing tables, drift classified, QA report."""

from __future__ import annotations

import json
import re

import pytest
from helpers import FLAG, insert_customer, run_cli
from sync_state import add_customers, is_skip, mixed_values, rollout_ids, set_gates

from sync_admin import verify

DRIFT_CLASSES = list(verify.DRIFT_CLASSES)


def verify_json(capsys, db_url: str, *args: str) -> tuple[int, dict, str]:
    code, out, err = run_cli(capsys, db_url, "verify", "--format", "json", *args)
    return code, json.loads(out), err


def drift_examples(report: dict) -> dict[str, list[int]]:
    """{class: example ids} for the classes with drift."""
    return {name: item["example_customer_ids"] for name, item in report["drift"].items() if item["count"]}


@pytest.fixture
def synced(conn) -> dict[str, int]:
    """Six customers synced by the triggers (flag on for everyone): name -> id."""
    set_gates(conn, everyone=True)
    values = {"a1": "A1", "a1_too": "A1", "b2": "B2", "none": None, "skip": "not an account", "c3": " C3 "}
    return {name: insert_customer(conn, value, f"{name}@example.com") for name, value in values.items()}


# --- the rollout ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gates",
    [
        {"enabled": False, "everyone": True, "percentage": 50, "actors": (3, 4)},
        {"everyone": True},
        {"percentage": 30},
        {"actors": (3, 7, 11)},
        {"percentage": 25, "actors": (1, 2, 500)},
        {"enabled": True},
    ],
)
def test_customers_in_rollout_is_exactly_flag_enabled_for(conn, gates):
    add_customers(conn, [None] * 400)
    set_gates(conn, **gates)
    set_based = {row[0] for row in conn.execute(f"SELECT id FROM billing_sync.customers_in_rollout('{FLAG}')")}
    assert set_based == rollout_ids(conn)


# --- clean, and each drift class ------------------------------------------------------------------


def test_clean_after_the_triggers_exit_0_and_skips_are_reported_but_are_not_drift(conn, capsys, db_url, synced):
    code, report, err = verify_json(capsys, db_url)
    assert code == 0, err
    assert report["clean"] is True
    assert report["counts"] == {"customers": 6, "in_rollout": 6, "billing_accounts": 3, "memberships": 4}
    assert report["sync_skips"]["count"] == 1 and report["sync_skips"]["example_customer_ids"] == [synced["skip"]]
    code, out, _ = run_cli(capsys, db_url, "verify")
    assert code == 0 and out.strip().endswith("exactly the derived state for every customer in the rollout")


def _missing_billing_account(conn, ids):
    conn.execute("DELETE FROM billing_account_memberships WHERE customer_id = %s", (ids["b2"],))
    conn.execute("DELETE FROM billing_accounts WHERE zuora_account_id = 'B2'")
    return {"missing_billing_account": [ids["b2"]]}


def _missing_membership(conn, ids):
    conn.execute("DELETE FROM billing_account_memberships WHERE customer_id = %s", (ids["a1_too"],))
    return {"missing_membership": [ids["a1_too"]]}


def _stale_membership(conn, ids):
    conn.execute(
        "INSERT INTO billing_account_memberships (billing_account_id, customer_id)"
        " SELECT id, %s FROM billing_accounts WHERE zuora_account_id = 'B2'",
        (ids["a1"],),
    )
    return {"stale_membership": [ids["a1"]]}


def _stale_after_a_write_with_the_kill_switch_off(conn, ids):
    set_gates(conn, enabled=False, everyone=True)
    conn.execute("UPDATE customers SET zuora_account_id = NULL WHERE id = %s", (ids["c3"],))
    set_gates(conn, everyone=True)
    return {"stale_membership": [ids["c3"]]}


def _orphan_account_gone(conn, ids):
    # Foreign keys are triggers, which replica mode skips: only a superuser editing by hand can do this.
    conn.execute("SET session_replication_role = replica")
    conn.execute("DELETE FROM billing_accounts WHERE zuora_account_id = 'B2'")
    conn.execute("RESET session_replication_role")
    return {"missing_billing_account": [ids["b2"]], "duplicate_or_orphan_membership": [ids["b2"]]}


def _orphan_customer_gone(conn, ids):
    conn.execute("SET session_replication_role = replica")  # ON DELETE CASCADE is skipped too
    conn.execute("DELETE FROM customers WHERE id = %s", (ids["b2"],))
    conn.execute("RESET session_replication_role")
    return {"duplicate_or_orphan_membership": [ids["b2"]]}


def _duplicate(conn, ids):
    # The unique constraint makes a duplicate impossible; only dropping it (a schema edit by hand) allows one.
    conn.execute(
        "ALTER TABLE billing_account_memberships"
        " DROP CONSTRAINT billing_account_memberships_customer_id_billing_account_id_key"
    )
    conn.execute(
        "INSERT INTO billing_account_memberships (billing_account_id, customer_id)"
        " SELECT billing_account_id, customer_id FROM billing_account_memberships WHERE customer_id = %s",
        (ids["a1"],),
    )
    return {"duplicate_or_orphan_membership": [ids["a1"]]}


@pytest.mark.parametrize(
    ("edit", "backfill_fixes"),
    [
        (_missing_billing_account, True),
        (_missing_membership, True),
        (_stale_membership, True),
        (_stale_after_a_write_with_the_kill_switch_off, True),
        (_orphan_account_gone, True),
        (_orphan_customer_gone, False),  # no customer to walk: reported for a person to delete
        (_duplicate, False),  # the schema itself is broken: restore the constraint first
    ],
)
def test_verify_detects_each_drift_class_made_by_hand(conn, capsys, db_url, synced, edit, backfill_fixes):
    expected = edit(conn, synced)

    code, report, err = verify_json(capsys, db_url)

    assert code == 1
    assert err.strip().splitlines() == [
        f"error: drift found in {len(expected)} of 4 classes; run `sync-admin backfill`"
    ]
    assert report["clean"] is False
    assert drift_examples(report) == expected
    assert report["sync_skips"]["count"] == 1  # skips are not drift, whatever else is wrong
    if backfill_fixes:
        assert run_cli(capsys, db_url, "backfill")[0] == 0
        assert verify_json(capsys, db_url)[0] == 0


def test_drift_of_customers_outside_the_rollout_is_not_checked(conn, capsys, db_url):
    ids = add_customers(conn, [f"A{i}" for i in range(200)])  # flag off: none synced
    set_gates(conn, actors=ids[:3])
    assert run_cli(capsys, db_url, "backfill")[0] == 0
    code, report, _ = verify_json(capsys, db_url)
    assert code == 0
    assert report["counts"]["in_rollout"] == 3 and report["counts"]["memberships"] == 3


def test_counts_and_examples_of_many_customers(conn, capsys, db_url):
    values = mixed_values(500, seed=11)
    ids = add_customers(conn, values)  # flag off: every customer with an account is missing its rows
    set_gates(conn, everyone=True)
    with_account = [cid for cid, value in zip(ids, values, strict=True) if value and value.strip(" \t\n\r\x0b\x0c")]
    skips = [cid for cid, value in zip(ids, values, strict=True) if is_skip(value)]

    code, report, _ = verify_json(capsys, db_url, "--examples", "3")

    assert code == 1
    missing = report["drift"]["missing_billing_account"]
    assert missing["count"] == len(with_account) - len(skips)
    assert missing["example_customer_ids"] == [c for c in with_account if c not in skips][:3]
    assert report["sync_skips"]["count"] == len(skips)
    code, report, _ = verify_json(capsys, db_url, "--examples", "0")
    assert all(item["example_customer_ids"] == [] for item in report["drift"].values())


# --- the QA report ----------------------------------------------------------------------------------

MARKDOWN_SNAPSHOT = """\
#### QA report: `account_data_persistence` sync

- **Checked at:** <TIMESTAMP>
- **Environment:** database <DATABASE> on <HOST> as <USER>, PostgreSQL <VERSION>
- **Flag:** account_data_persistence: ON; everyone: yes; actors: 0; percentage: 0 %

| customers | in rollout | billing accounts | memberships |
| --- | --- | --- | --- |
| 6 | 6 | 3 | 3 |

| drift class | count | example customer ids |
| --- | --- | --- |
| missing billing account | 0 customers |  |
| missing membership | 1 customer | 2 |
| stale membership | 0 memberships |  |
| duplicate or orphan membership | 0 memberships |  |

**Sync skips** (customers in the rollout whose `zuora_account_id` is not blank and not an account): 1 customer (e.g. 5)

**Result:** drift found (1 row): run `sync-admin backfill`, then verify again
"""


def normalise(markdown: str) -> str:
    markdown = re.sub(r"(\*\*Checked at:\*\* ).*", r"\1<TIMESTAMP>", markdown)
    return re.sub(
        # Debian's server says e.g. "15.18 (Debian 15.18-0+deb12u1)": the version runs to the end of the line.
        r"database \S+ on \S+ as \S+, PostgreSQL .+",
        "database <DATABASE> on <HOST> as <USER>, PostgreSQL <VERSION>",
        markdown,
    )


def test_markdown_qa_report_snapshot(conn, capsys, db_url, synced):
    _missing_membership(conn, synced)
    code, out, _ = run_cli(capsys, db_url, "verify", "--format", "markdown")
    assert code == 1
    assert normalise(out) == MARKDOWN_SNAPSHOT
    info = conn.info
    assert f"database {info.dbname} on {info.host}:{info.port} as {info.user}, PostgreSQL" in out
    assert re.search(r"\*\*Checked at:\*\* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d\n", out)
    assert "password" not in out.lower() and "@" not in out


@pytest.mark.parametrize(
    "args",
    [["--examples", "-1"], ["--examples", str(verify.MAX_EXAMPLES + 1)], ["--examples", "x"], ["--format", "yaml"]],
)
def test_bad_input_exits_2_with_one_line(conn, capsys, db_url, args):
    code, out, err = run_cli(capsys, db_url, "verify", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
