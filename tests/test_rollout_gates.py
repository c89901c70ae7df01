"""Actor and percentage gates, the kill switch, and their audit (issue: targeted and incremental rollout)."""

from __future__ import annotations

import pytest
from helpers import FLAG, audit_events, insert_customer, memberships, run_cli

from sync_admin.bucketing import unleash_bucket


def set_gates(conn, *, enabled=True, everyone=False, percentage=0, actors=()):
    conn.execute(
        "UPDATE billing_sync.feature_flags SET enabled = %s, everyone = %s, percentage = %s WHERE name = %s",
        (enabled, everyone, percentage, FLAG),
    )
    conn.execute("DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = %s", (FLAG,))
    for customer_id in actors:
        conn.execute(
            "INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, %s)", (FLAG, customer_id)
        )


def add_customers(conn, count: int) -> None:
    conn.execute(
        "INSERT INTO customers (email) SELECT 'c' || g || '@example.com' FROM generate_series(1, %s) g", (count,)
    )


def enabled_ids(conn) -> set[int]:
    rows = conn.execute("SELECT id FROM customers WHERE billing_sync.flag_enabled_for(%s, id)", (FLAG,))
    return {row[0] for row in rows}


@pytest.mark.parametrize(
    ("group", "user_id", "bucket"),
    [("gr1", 123, 73), ("groupX", 999, 25), (FLAG, 1, 36), (FLAG, 1000, 91)],
)
def test_sql_bucket_reproduces_unleash_vectors(conn, group, user_id, bucket):
    assert conn.execute("SELECT billing_sync.unleash_bucket(%s, %s)", (group, user_id)).fetchone() == (bucket,)


def test_sql_bucket_agrees_with_python_reference_on_100000_ids(conn):
    rows = conn.execute(
        "SELECT g, billing_sync.unleash_bucket(%s, g) FROM generate_series(1, 100000) g", (FLAG,)
    ).fetchall()
    mismatches = [(i, sql) for i, sql in rows if sql != unleash_bucket(FLAG, i)]
    assert len(rows) == 100_000
    assert mismatches == []


@pytest.mark.parametrize("percentage", [10, 25, 50])
def test_observed_fraction_is_within_one_point_of_percentage(conn, percentage):
    # 10,000 customers with ids 10,001-20,000. The first 10,000 ids give 48.97 % at P = 50: a real
    # 2-sigma draw of Unleash's hash (binomial sigma = 0.5 points), reproduced by the Python
    # reference; the aggregate test below bounds all 100,000 ids.
    conn.execute("ALTER TABLE customers ALTER COLUMN id RESTART WITH 10001")
    add_customers(conn, 10_000)
    set_gates(conn, percentage=percentage)
    observed = len(enabled_ids(conn)) / 10_000 * 100
    assert abs(observed - percentage) <= 1.0


@pytest.mark.parametrize("percentage", [1, 10, 25, 50, 75, 99])
def test_fraction_over_100000_ids_is_within_half_a_point(conn, percentage):
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE billing_sync.unleash_bucket(%s, g) <= %s) FROM generate_series(1, 100000) g",
        (FLAG, percentage),
    ).fetchone()
    assert abs(row[0] / 1000 - percentage) <= 0.5


def test_raising_the_percentage_only_adds_customers_and_lowering_only_removes(conn):
    add_customers(conn, 2_000)
    previous: set[int] = set()
    for percentage in range(0, 101, 5):
        set_gates(conn, percentage=percentage)
        current = enabled_ids(conn)
        assert previous <= current
        previous = current
    assert len(previous) == 2_000
    for percentage in range(100, -1, -5):
        set_gates(conn, percentage=percentage)
        current = enabled_ids(conn)
        assert current <= previous
        previous = current
    assert previous == set()


def test_gates_combine_with_or_and_kill_switch_wins(conn):
    add_customers(conn, 500)
    outside = next(i for i in range(1, 501) if unleash_bucket(FLAG, i) > 10)
    set_gates(conn, percentage=10, actors=[outside])
    cohort = {i for i in range(1, 501) if unleash_bucket(FLAG, i) <= 10}
    assert enabled_ids(conn) == cohort | {outside}
    set_gates(conn, percentage=10, actors=[outside], everyone=True)
    assert len(enabled_ids(conn)) == 500
    set_gates(conn, enabled=False, percentage=10, actors=[outside], everyone=True)
    assert enabled_ids(conn) == set()


def test_unknown_flag_is_off(conn):
    add_customers(conn, 1)
    assert conn.execute("SELECT billing_sync.flag_enabled_for('no_such_flag', 1)").fetchone() == (False,)


def test_triggers_sync_exactly_the_customers_in_the_rollout(conn):
    # Actors outside the percentage: two inserted by the bulk statement (its set-based pass), one alone
    # (the single-row path), and one updated.
    outside = [i for i in range(1, 401) if unleash_bucket(FLAG, i) > 50]
    actors = [*outside[:2], 401, 402]
    set_gates(conn, percentage=50, actors=actors)
    conn.execute(
        "INSERT INTO customers (email, zuora_account_id)"
        " SELECT 'c' || g || '@example.com', 'A' || (g % 7) FROM generate_series(1, 400) g"
    )
    in_rollout = {i for i in range(1, 401) if unleash_bucket(FLAG, i) <= 50} | set(outside[:2])
    assert {customer_id for customer_id, _ in memberships(conn)} == in_rollout
    assert insert_customer(conn, "A1") == 401
    insert_customer(conn, None)
    conn.execute("UPDATE customers SET zuora_account_id = 'A2' WHERE id IN (402, %s)", (outside[2],))
    assert {customer_id for customer_id, _ in memberships(conn)} == in_rollout | {401, 402}


def test_customers_leaving_the_cohort_keep_their_rows_but_are_not_maintained(conn):
    set_gates(conn, everyone=True)
    customer = insert_customer(conn, "A1")
    set_gates(conn, everyone=False)  # on, but no gate covers the customer any more
    conn.execute("UPDATE customers SET zuora_account_id = 'B2' WHERE id = %s", (customer,))
    assert memberships(conn) == {(customer, "A1")}


def test_kill_switch_keeps_the_gates_and_resume_restores_the_rollout(conn, capsys, db_url):
    add_customers(conn, 300)
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "30", "--actor", "7")[0] == 0
    before_ids = enabled_ids(conn)
    before_row = conn.execute("SELECT enabled, everyone, percentage FROM billing_sync.feature_flags").fetchone()

    code, out, _ = run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "rollback")
    assert code == 0 and "OFF" in out
    assert enabled_ids(conn) == set()
    customer = insert_customer(conn, "A1")
    assert memberships(conn) == set()
    assert conn.execute("SELECT everyone, percentage FROM billing_sync.feature_flags").fetchone() == (False, 30)
    assert conn.execute("SELECT customer_id FROM billing_sync.feature_flag_actors").fetchall() == [(7,)]

    assert run_cli(capsys, db_url, "flag", "resume", FLAG)[0] == 0
    assert conn.execute("SELECT enabled, everyone, percentage FROM billing_sync.feature_flags").fetchone() == before_row
    assert enabled_ids(conn) == before_ids | ({customer} if unleash_bucket(FLAG, customer) <= 30 else set())


def test_plain_sql_kill_switch_and_restore(conn):
    add_customers(conn, 200)
    set_gates(conn, percentage=40, actors=[3])
    expected = enabled_ids(conn)
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = false WHERE name = %s", (FLAG,))
    assert enabled_ids(conn) == set()
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true WHERE name = %s", (FLAG,))
    assert enabled_ids(conn) == expected


def test_cli_actor_add_and_remove(conn, capsys, db_url):
    first, second = insert_customer(conn, None), insert_customer(conn, None)
    code, out, _ = run_cli(capsys, db_url, "flag", "enable", FLAG, "--actor", str(first), "--actor", str(second))
    assert code == 0
    assert "actors:     2" in out
    assert enabled_ids(conn) == {first, second}
    conn.execute("UPDATE customers SET zuora_account_id = 'A1' WHERE id = %s", (first,))
    assert memberships(conn) == {(first, "A1")}

    code, out, _ = run_cli(capsys, db_url, "flag", "disable", FLAG, "--actor", str(first))
    assert code == 0
    assert enabled_ids(conn) == {second}
    assert conn.execute("SELECT enabled FROM billing_sync.feature_flags").fetchone() == (True,)


def test_cli_enable_never_implies_everyone_and_says_how(conn, capsys, db_url):
    add_customers(conn, 20)
    before = audit_events(conn)
    code, out, err = run_cli(capsys, db_url, "flag", "enable", FLAG)
    assert code == 2 and out == ""
    assert err.strip() == "error: say for whom: --everyone, --actor CUSTOMER_ID or --percentage P; nothing changed"
    assert enabled_ids(conn) == set() and audit_events(conn) == before

    code, out, _ = run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")
    assert code == 0
    assert f"{FLAG}: ON for everyone (20 customers)" in out
    assert len(enabled_ids(conn)) == 20


def test_adding_a_gate_while_the_kill_switch_is_pulled_keeps_it_pulled(conn, capsys, db_url):
    """After the kill switch, `flag enable --actor 5` (testing one customer during the incident) used to switch
    the flag back on, and with it the everyone gate for every customer. Only `flag resume` undoes the kill switch."""
    add_customers(conn, 20)
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--by", "alice", "--reason", "INC-9")[0] == 0
    assert enabled_ids(conn) == set()

    code, out, _ = run_cli(
        capsys, db_url, "flag", "enable", FLAG, "--actor", "5", "--reason", "test one customer during incident"
    )
    assert code == 0
    assert enabled_ids(conn) == set()  # nobody: the kill switch stays pulled
    first = out.splitlines()[0]
    assert first.startswith(f"{FLAG}: OFF: kill switch pulled by alice at ")
    assert first.endswith("(INC-9); gates kept: everyone + 1 actor")
    assert f"the kill switch stays pulled: `sync-admin flag resume {FLAG}` switches the flag back on" in out

    code, out, _ = run_cli(capsys, db_url, "flag", "status", FLAG)
    assert code == 0 and "OFF: kill switch pulled by alice" in out and "(INC-9)" in out

    code, out, _ = run_cli(capsys, db_url, "flag", "resume", FLAG, "--reason", "INC-9 resolved")
    assert code == 0 and f"{FLAG}: ON for everyone (20 customers)" in out
    assert len(enabled_ids(conn)) == 20


def test_a_new_flag_without_gates_is_switched_on_by_its_first_gate(conn, capsys, db_url):
    add_customers(conn, 20)
    code, out, _ = run_cli(capsys, db_url, "flag", "status", FLAG)
    assert code == 0 and f"{FLAG}: OFF: no gate set" in out
    code, out, _ = run_cli(capsys, db_url, "flag", "enable", FLAG, "--actor", "3", "--actor", "4")
    assert code == 0 and f"{FLAG}: ON for 2 customers (2 actors)" in out
    assert enabled_ids(conn) == {3, 4}


def test_the_state_reads_the_same_in_list_status_and_changes(conn, capsys, db_url):
    add_customers(conn, 1000)
    code, out, _ = run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "10", "--actor", "1", "--actor", "2")
    assert code == 0
    expected = len({i for i in range(1, 1001) if unleash_bucket(FLAG, i) <= 10} | {1, 2})
    line = f"{FLAG}: ON for {expected:,} customers (10 %, 2 actors)"
    assert line in out
    assert line in run_cli(capsys, db_url, "flag", "status", FLAG)[1]
    listed = run_cli(capsys, db_url, "flag", "list")[1]
    assert "ON" in listed and "kill switch on" not in listed


def test_cli_status_counts_the_rollout_and_explain_names_the_gate(conn, capsys, db_url):
    add_customers(conn, 1000)
    run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "25", "--actor", "1000")
    code, out, _ = run_cli(capsys, db_url, "flag", "status", FLAG)
    assert code == 0
    expected = len({i for i in range(1, 1001) if unleash_bucket(FLAG, i) <= 25} | {1000})
    assert f"ON for {expected:,} customers (25 %, 1 actor)" in out
    assert "percentage: 25 %" in out

    code, out, _ = run_cli(capsys, db_url, "flag", "explain", FLAG, "1")  # bucket 36
    assert code == 0 and "off for customer 1" in out and "bucket 36 > 25%" in out
    code, out, _ = run_cli(capsys, db_url, "flag", "explain", FLAG, "1000")  # actor, bucket 91
    assert "on for customer 1000: actor gate" in out and "bucket 91" in out
    low = next(i for i in range(1, 1000) if unleash_bucket(FLAG, i) <= 25)
    code, out, _ = run_cli(capsys, db_url, "flag", "explain", FLAG, str(low))
    assert f"on for customer {low}: percentage gate: bucket {unleash_bucket(FLAG, low)} <= 25%" in out
    run_cli(capsys, db_url, "flag", "disable", FLAG)
    code, out, _ = run_cli(capsys, db_url, "flag", "explain", FLAG, "1000")
    assert "off for customer 1000: kill switch" in out


@pytest.mark.parametrize(
    "args",
    [
        ["flag", "enable", FLAG, "--percentage", "101"],
        ["flag", "enable", FLAG, "--percentage", "-1"],
        ["flag", "enable", FLAG, "--percentage", "12.5"],
        ["flag", "enable", FLAG, "--percentage", "ten"],
        ["flag", "enable", FLAG, "--actor", "999999"],
        ["flag", "enable", FLAG, "--actor", "1", "--actor", "424242"],
        ["flag", "enable", "no_such_flag", "--percentage", "10"],
        ["flag", "disable", FLAG, "--actor", "1"],
        ["flag", "explain", FLAG, "999999"],
        ["flag", "explain", "no_such_flag", "1"],
        ["flag", "status", "no_such_flag"],
    ],
)
def test_invalid_gate_input_exits_2_with_one_line_and_changes_nothing(conn, capsys, db_url, args):
    insert_customer(conn, None)  # customer 1 exists
    flag_before = conn.execute("SELECT * FROM billing_sync.feature_flags").fetchall()
    events_before = audit_events(conn)
    code, out, err = run_cli(capsys, db_url, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
    assert conn.execute("SELECT * FROM billing_sync.feature_flags").fetchall() == flag_before
    assert conn.execute("SELECT count(*) FROM billing_sync.feature_flag_actors").fetchone() == (0,)
    assert audit_events(conn) == events_before


def test_every_gate_change_by_sql_is_audited(conn):
    insert_customer(conn, None)
    conn.execute("BEGIN")
    conn.execute(
        "SELECT set_config('billing_sync.actor', 'alice', true), set_config('billing_sync.reason', 'r1', true)"
    )
    conn.execute("INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, 1)", (FLAG,))
    conn.execute("UPDATE billing_sync.feature_flags SET percentage = 10 WHERE name = %s", (FLAG,))
    conn.execute("UPDATE billing_sync.feature_flags SET everyone = true WHERE name = %s", (FLAG,))
    conn.execute("DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = %s", (FLAG,))
    conn.execute("COMMIT")
    events = audit_events(conn)[-4:]
    assert [(e[0], e[1], e[2], e[3]) for e in events] == [
        ("feature_flag_actors", "INSERT", "alice", "r1"),
        ("feature_flags", "UPDATE", "alice", "r1"),
        ("feature_flags", "UPDATE", "alice", "r1"),
        ("feature_flag_actors", "DELETE", "alice", "r1"),
    ]
    assert events[0][4] is None and events[0][5]["customer_id"] == 1
    assert (events[1][4]["percentage"], events[1][5]["percentage"]) == (0, 10)
    assert (events[2][4]["everyone"], events[2][5]["everyone"]) == (False, True)
    assert events[3][4]["customer_id"] == 1 and events[3][5] is None


def test_every_gate_change_by_cli_is_audited(conn, capsys, db_url):
    insert_customer(conn, None)
    start = len(audit_events(conn))
    run_cli(capsys, db_url, "flag", "enable", FLAG, "--actor", "1", "--reason", "testers", "--by", "bob")
    run_cli(capsys, db_url, "flag", "enable", FLAG, "--percentage", "25", "--reason", "ramp", "--by", "bob")
    run_cli(capsys, db_url, "flag", "disable", FLAG, "--actor", "1", "--reason", "done", "--by", "bob")
    events = audit_events(conn)[start:]
    assert [(e[0], e[1], e[3]) for e in events] == [
        ("feature_flag_actors", "INSERT", "testers"),
        ("feature_flags", "UPDATE", "testers"),  # kill switch on
        ("feature_flags", "UPDATE", "ramp"),  # percentage 0 -> 25
        ("feature_flag_actors", "DELETE", "done"),
    ]
    assert {e[2] for e in events} == {"bob"}
    assert events[1][5]["enabled"] is True and events[2][5]["percentage"] == 25


def test_history_shows_gate_changes(conn, capsys, db_url):
    insert_customer(conn, None)
    run_cli(capsys, db_url, "flag", "enable", FLAG, "--actor", "1", "--percentage", "5")
    code, out, _ = run_cli(capsys, db_url, "flag", "history", FLAG, "--format", "markdown")
    assert code == 0
    assert "created flag_name=" in out and "customer_id=1" in out
    assert "percentage: 0 -> 5" in out


def test_removing_every_gate_while_pulled_does_not_make_the_next_gate_undo_the_kill_switch(conn, capsys, db_url):
    add_customers(conn, 20)
    assert run_cli(capsys, db_url, "flag", "enable", FLAG, "--everyone")[0] == 0
    assert run_cli(capsys, db_url, "flag", "disable", FLAG, "--reason", "incident")[0] == 0
    code, out, _ = run_cli(capsys, db_url, "flag", "disable", FLAG, "--everyone")
    assert code == 0 and "OFF: kill switch pulled" in out and "gates kept: no gate" in out
    code, out, _ = run_cli(capsys, db_url, "flag", "enable", FLAG, "--actor", "5")
    assert code == 0 and "OFF: kill switch pulled" in out and "the kill switch stays pulled" in out
    assert enabled_ids(conn) == set()
    assert run_cli(capsys, db_url, "flag", "resume", FLAG)[0] == 0
    assert enabled_ids(conn) == {5}
