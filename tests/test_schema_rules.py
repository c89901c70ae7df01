"""Rules of the schema that .squawk.toml leaves to tests instead of squawk (it says why): checked on the
database the migrations built, so they hold for every revision's tables, colleagues' included."""

from __future__ import annotations

OUR_COLUMNS = """
    SELECT c.table_schema || '.' || c.table_name || '.' || c.column_name, c.data_type
    FROM information_schema.columns c
    JOIN information_schema.tables t USING (table_schema, table_name)
    WHERE c.table_schema IN ('public', 'billing_sync') AND t.table_type = 'BASE TABLE'
      AND c.table_name <> 'alembic_version'
"""


def test_no_column_is_varchar_or_char(conn):
    """prefer-text-field is off only because of alembic's own alembic_version.version_num."""
    sized = [row for row in conn.execute(OUR_COLUMNS) if row[1] in ("character varying", "character")]
    assert sized == []


def test_every_identifier_column_is_bigint(conn):
    """prefer-bigint-over-int is off for small bounded numbers; identifiers must never run out."""
    ids = [row for row in conn.execute(OUR_COLUMNS) if row[0].endswith((".id", "_id")) and row[1] != "text"]
    assert ids and all(data_type == "bigint" for _, data_type in ids), ids
