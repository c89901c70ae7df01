"""The alembic migrations, driven from Python: upgrade, downgrade, current, offline SQL."""

from __future__ import annotations

import io
import logging
import re
import time
from contextlib import redirect_stdout

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, OperationalError

from sync_admin import migration_ops, resources
from sync_admin.db import connect_hint, first_line, mask, sqlalchemy_engine
from sync_admin.errors import BadInput, DatabaseUnavailable, Interrupted, SyncAdminError
from sync_admin.release import PRE_RELEASE_REVISION, GuardOptions

log = logging.getLogger(__name__)


def alembic_config(url: str | None) -> Config:
    """Config for the bundled migrations; the URL travels as an attribute, never in the ini text."""
    config = Config(str(resources.alembic_ini()))
    config.set_main_option("script_location", str(resources.migrations_dir()))
    if url is not None:
        config.attributes["database_url"] = url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def upgrade(url: str, revision: str = "head", guard: GuardOptions | None = None) -> None:
    """Upgrade to REVISION; GUARD is what the release revision's guard is told (override, period, who, why)."""
    config = alembic_config(url)
    if guard is not None:
        config.attributes["release_settings"] = guard.settings()
    _with_restarts(command.upgrade, config, _absolute(url, revision))


def downgrade(url: str, revision: str, guard: GuardOptions | None = None) -> None:
    """Downgrade to REVISION; GUARD's actor and reason go to the audit record of a release undone (RESTORE)."""
    config = alembic_config(url)
    if guard is not None:
        config.attributes["release_settings"] = guard.settings()
    _with_restarts(command.downgrade, config, _absolute(url, revision))


_RELATIVE = re.compile(r"(?P<start>[0-9a-z]*?)(?P<sign>[+-])(?P<steps>\d+)")


def _absolute(url: str, revision: str) -> str:
    """A relative target (+2, -1, 0004+1, head-1) as the revision it names now: a revision that restarts runs
    alembic again, which would count a relative target once more from where it got to."""
    if _RELATIVE.fullmatch(revision) is None:
        return revision
    order = [known for known, _ in revisions()]
    goal = _goal(current(url), revision, order)
    return "base" if goal == 0 else order[goal - 1]


def _goal(current_revision: str | None, revision: str, order: list[str]) -> int:
    """Where REVISION (absolute, or relative to CURRENT_REVISION or to a named one) is in ORDER (base 0)."""
    relative = _RELATIVE.fullmatch(revision)
    if relative is None:
        return _position(revision, order)
    start = relative["start"] or current_revision or "base"
    steps = int(relative["steps"]) * (1 if relative["sign"] == "+" else -1)
    goal = _position(start, order) + steps
    if not 0 <= goal <= len(order):
        raise BadInput(f"{revision} goes past {'head' if goal > 0 else 'base'}")
    return goal


def _with_restarts(action, config: Config, revision: str) -> None:  # noqa: ANN001
    """Run the migrations; a revision that restarts (migration_ops.RevisionRestart: it held up the kill switch
    while waiting for a lock) is rolled back by alembic and run again after its pause, the revisions before it
    staying committed, until the lock schedule is used up."""
    try:
        while True:
            try:
                _run(action, config, revision)
                return
            except migration_ops.RevisionRestart as restart:
                log.warning("%s; next attempt in %g s", restart, restart.pause)
                time.sleep(restart.pause)
                migration_ops.first_attempt = restart.next_attempt
    finally:
        migration_ops.first_attempt = 1


def interrupted(url: str) -> Interrupted:
    """What to say after Ctrl-C stopped an upgrade or a downgrade of URL: the revision the database is at (the one in
    flight was rolled back with its transaction, the ones before it are committed: each runs in a transaction of its
    own). The CLI raises it; a library caller gets the KeyboardInterrupt itself."""
    try:
        at = current(url)
    except Exception:  # the report of an interrupt must not fail: the command that tells is named instead
        return Interrupted("interrupted; `sync-admin db current` tells which revision the database is at")
    return Interrupted(
        f"interrupted; the database is at revision {at or 'base (nothing installed)'}: each revision commits on its"
        " own, the one in flight was rolled back; run the command again to go on"
    )


def revisions() -> list[tuple[str, str]]:
    """(revision, its title: the first line of its docstring), oldest first."""
    script = ScriptDirectory.from_config(alembic_config(None))
    found = [(r.revision, (r.doc or "").strip().splitlines()[0] if r.doc else "") for r in script.walk_revisions()]
    return list(reversed(found))


def _position(revision: str, order: list[str]) -> int:
    """Where REVISION is: base 0, the first revision 1, ... (head and unique prefixes accepted)."""
    if revision == "base":
        return 0
    if revision == "head":
        return len(order)
    matches = [i for i, known in enumerate(order, start=1) if known.startswith(revision)]
    if len(matches) != 1:
        raise BadInput(f"unknown revision {revision!r} (known: base, {', '.join(order)}, head)")
    return matches[0]


def offline_sql(revision_range: str = "base:head") -> str:
    """The SQL a DBA reviews before deploy: alembic's --sql output, no database needed. A range that goes down
    (0005:0003) gives the downgrade's SQL."""
    start, colon, end = revision_range.partition(":")
    order = [revision for revision, _ in revisions()]
    if not colon or not start or not end:
        raise BadInput(f"a range is FROM:TO (base:head, 0005:0006, 0006:0005), not {revision_range!r}")
    first, last = _position(start, order), _position(end, order)
    if first == last:
        raise BadInput(f"{revision_range} is empty: FROM and TO are the same revision")
    buffer = io.StringIO()
    config = alembic_config(None)
    config.output_buffer = buffer
    _run(command.upgrade if first < last else command.downgrade, config, revision_range, sql=True)
    return buffer.getvalue()


def to_undo(current_revision: str | None, target: str) -> list[tuple[str, str]]:
    """The revisions a downgrade from CURRENT_REVISION to TARGET undoes, newest first, with their titles."""
    listed = revisions()
    order = [revision for revision, _ in listed]
    now = 0 if current_revision is None else _position(current_revision, order)
    goal = _goal(current_revision, target, order)
    return [listed[i] for i in range(now - 1, goal - 1, -1)]


_DROPPED_BY_0001 = """
SELECT (SELECT count(*) FROM public.billing_account_memberships),
       (SELECT count(*) FROM public.billing_accounts),
       (SELECT count(*) FROM billing_sync.feature_flag_events),
       coalesce(pg_catalog.obj_description('public.customers'::pg_catalog.regclass, 'pg_class')
                LIKE 'billing-sync: created by migration 0001%%', false),
       (SELECT count(*) FROM public.customers)
"""


def data_lost(url: str) -> list[str]:
    """What undoing revision 0001 deletes from the database at URL, with row counts, one item a line."""
    from sync_admin import db  # the driver only for a downgrade that reaches base

    with db.connect(url, autocommit=True) as conn:
        row = conn.execute(_DROPPED_BY_0001).fetchone()
    assert row is not None
    memberships, accounts, audit, created_here, customers = row
    lost = [
        f"public.billing_account_memberships: {memberships:,} rows",
        f"public.billing_accounts: {accounts:,} rows",
        f"schema billing_sync, with the flags and their audit log: {audit:,} events",
    ]
    if created_here:
        lost.insert(0, f"public.customers (created by revision 0001): {customers:,} rows")
    return lost


def current(url: str) -> str | None:
    """The revision the database is at, None before the first upgrade."""
    engine = sqlalchemy_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise _unavailable(url, exc) from None
    finally:
        engine.dispose()


def _run(action, config: Config, revision: str, **kwargs: object) -> None:  # noqa: ANN001
    try:
        with redirect_stdout(io.StringIO()):
            action(config, revision, **kwargs)
    except CommandError as exc:
        raise BadInput(f"alembic: {mask(first_line(exc))}") from None
    except FileNotFoundError as exc:  # a revision names an SQL file this checkout does not have
        raise SyncAdminError(f"migration failed, a file is missing: {exc.filename}; reinstall sync-admin") from None
    except DBAPIError as exc:
        if _connection_failed(exc):
            raise _unavailable(config.attributes.get("database_url"), exc) from None
        if _release_refused(exc):
            raise ReleaseRefused(mask(first_line(exc.orig))) from None
        raise SyncAdminError(
            f"migration failed and its revision was rolled back: {mask(first_line(exc.orig))}{_hint(exc.orig)}"
        ) from None


class ReleaseRefused(SyncAdminError):
    """The release revision's guard refused: the rollout is not complete. The revisions before it stay applied."""

    def __init__(self, refusal: str) -> None:
        super().__init__(
            f"{refusal}; the database stays at revision {PRE_RELEASE_REVISION}, the sync as it was; to release"
            " anyway, recorded in the audit log with what was missing:"
            " `sync-admin db upgrade --release-override REASON`"
        )


_RELEASE_REFUSED = "release of account_data_persistence refused"


def _release_refused(exc: DBAPIError) -> bool:
    """The guard of sql/release/account_data_persistence_guard_v1.sql said no (object_not_in_prerequisite_state)."""
    return getattr(exc.orig, "sqlstate", None) == "55000" and str(exc.orig).startswith(_RELEASE_REFUSED)


# SQLSTATE classes of a database that cannot be used at all: connection exception, invalid
# authorization, invalid catalog name (no such database), and the server shutting down or starting.
_UNAVAILABLE_SQLSTATES = ("08", "28", "3D", "57P")


def _connection_failed(exc: DBAPIError) -> bool:
    """No connection at all, as opposed to a statement that failed (OperationalError covers both:
    a lock timeout or a failed check of a revision is an OperationalError too)."""
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def _hint(error: BaseException) -> str:
    """PostgreSQL's HINT says what to do next (a customers table that cannot be adopted says how to fix it)."""
    hint = getattr(getattr(error, "diag", None), "message_hint", None)
    return f" ({mask(hint)})" if hint else ""


def _unavailable(url: str | None, exc: OperationalError) -> DatabaseUnavailable:
    where = mask(url) if url else "the database"
    return DatabaseUnavailable(f"cannot connect to {where}: {mask(first_line(exc.orig))}; {connect_hint(exc.orig)}")
