"""What the alembic revisions call to install the versioned SQL files under sql/."""

from alembic import op
from sqlalchemy import text

from sync_admin.resources import read_sql


def run_sql_file(relative: str) -> None:
    """Execute one frozen SQL file (online, or printed in offline --sql mode).

    Colons are escaped so that SQLAlchemy does not take `:name` inside PL/pgSQL for a
    bind parameter; the text reaches PostgreSQL unchanged.
    """
    statement = read_sql(relative).strip().removesuffix(";")
    op.execute(text(statement.replace(":", r"\:")))
