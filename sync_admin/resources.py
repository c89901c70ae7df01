"""Where the migrations and the SQL files live, in a checkout or in an installed wheel."""

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def project_root() -> Path:
    """The folder holding alembic.ini, migrations/ and sql/.

    A checkout (and an editable install) has them beside the package; a wheel carries
    them inside it, under _bundled/.
    """
    for candidate in (_PACKAGE_DIR.parent, _PACKAGE_DIR / "_bundled"):
        if (candidate / "migrations" / "env.py").is_file() and (candidate / "sql").is_dir():
            return candidate
    raise FileNotFoundError(f"migrations/ and sql/ not found next to {_PACKAGE_DIR}")


def migrations_dir() -> Path:
    return project_root() / "migrations"


def alembic_ini() -> Path:
    return project_root() / "alembic.ini"


def sql_path(relative: str) -> Path:
    return project_root() / "sql" / relative


def read_sql(relative: str) -> str:
    """The text of one SQL file under sql/, e.g. "functions/sync_customer_account_v1.sql"."""
    return sql_path(relative).read_text(encoding="utf-8")
