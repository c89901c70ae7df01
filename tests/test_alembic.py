"""pytest-alembic's built-in checks, on PostgreSQL: one head, upgrade from nothing, every revision up and
down, and sync_admin.models matching what the migrations build (autogenerate finds nothing to do).

Its automatic collection is off (pyproject.toml says why); the checks are imported and run here.
Each gets a fresh database of the server under test: pytest-alembic's default engine is SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgtools import fresh_database
from pytest_alembic.tests import (  # noqa: F401 - collected by pytest as tests of this module
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine

from sync_admin import db, migrate


@pytest.fixture
def alembic_config():
    return migrate.alembic_config(None)


@pytest.fixture
def alembic_engine(conn, db_url) -> Iterator[Engine]:
    with fresh_database(conn, db_url) as url:
        engine = db.sqlalchemy_engine(url, application_name="pytest-alembic")
        yield engine
        engine.dispose()


def test_the_model_comparison_sees_a_difference(alembic_runner, alembic_engine):
    """The model check is not vacuous: a column the models do not know is reported."""
    alembic_runner.migrate_up_to("heads")
    with alembic_engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE billing_sync.feature_flags ADD COLUMN owner text")
    with pytest.raises(Exception, match="out of sync"):
        test_model_definitions_match_ddl(alembic_runner)
