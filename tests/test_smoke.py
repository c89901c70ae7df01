def test_template_is_migrated(conn):
    assert conn.execute("SELECT enabled FROM billing_sync.feature_flags").fetchall() == [(False,)]


def test_sync(conn):
    conn.execute("UPDATE billing_sync.feature_flags SET enabled = true")
    conn.execute(
        "INSERT INTO customers (email, zuora_account_id) VALUES ('a@x', ' Z1 '), ('b@x', 'Z1'), ('c@x', NULL)"
    )
    rows = conn.execute(
        "SELECT c.email, a.zuora_account_id FROM billing_account_memberships m JOIN customers c ON c.id = m.customer_id JOIN billing_accounts a ON a.id = m.billing_account_id ORDER BY 1"
    ).fetchall()
    assert rows == [("a@x", "Z1"), ("b@x", "Z1")]


def test_url(db_url, connect):
    assert connect().execute("select 1").fetchone() == (1,)
