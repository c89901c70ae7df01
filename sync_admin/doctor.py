"""`sync-admin doctor`: the installed database objects against the code, one check per line.

What the code expects is sync_admin/manifest.py; what is installed is read from the catalog
(sync_admin/definitions.py). Every failing check carries the command that fixes it. Commands that
change a table's triggers set a short lock_timeout, since trigger DDL blocks writes to the table
while it waits for its lock (shared field notes 2).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from sync_admin import definitions, manifest, migrate, release, resources
from sync_admin.definitions import LiveFunction, LiveTrigger

PSQL = 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1'
LOCK_TIMEOUT = "-c \"SET lock_timeout = '5s'\""
ENABLED_STATES = {"O": "enabled", "D": "DISABLED", "R": "enabled on replicas only", "A": "enabled always"}
RELKINDS = {"r": "table", "p": "table", "i": "index", "I": "index", "S": "sequence", "v": "view",
            "m": "materialized view", "c": "type", "f": "foreign table"}  # fmt: skip


@dataclass(frozen=True)
class Check:
    subject: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False  # reported (WARN) with its fix, but not a failure: exit 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok and not check.warning)

    def as_json(self) -> dict[str, Any]:
        return {"ok": not self.failed, "checks": [check.as_json() for check in self.checks]}

    def lines(self) -> list[str]:
        """A line per check; a failing one is followed by its fix."""
        lines = []
        for check in self.checks:
            status = "ok  " if check.ok else "WARN" if check.warning else "FAIL"
            lines.append(f"{status}  {check.subject}: {check.detail}")
            if check.fix:
                lines.append(f"      fix: {check.fix}")
        verdict = f"{len(self.failed)} of {len(self.checks)} checks failed" if self.failed else "all checks passed"
        return [*lines, verdict]


def run(conn: psycopg.Connection) -> Report:
    alembic, objects = check_alembic(conn)
    if objects is None:
        # The manifest describes the revision before the release and the release: against another revision its
        # advice would be wrong.
        detail = (
            f"not checked: they are checked at {manifest.PRE_RELEASE_REVISION} (before the release) and at"
            f" {manifest.RELEASE_REVISION} (released)"
        )
        skipped = Check("objects", False, detail, alembic.fix)
        return Report((alembic, skipped))
    functions, triggers = definitions.read(conn)
    checks = [alembic, *check_flags(conn, objects), check_switch_mirror(conn, objects)]
    checks += [check_application_privileges(conn), check_repair_queue(conn), check_two_phase_commit(conn)]
    checks += [check_function(expected, functions.get(expected.signature)) for expected in objects.functions]
    checks += [check_trigger(expected, triggers.get((expected.table, expected.name))) for expected in objects.triggers]
    checks += check_relations(conn, objects)
    checks += check_unexpected(conn, objects, functions, triggers)
    return Report(tuple(_runnable(check, conn) for check in checks))


# What names a database for any psql (newer libpq options would make an older psql refuse the string).
_PSQL_KEYS = ("host", "hostaddr", "port", "dbname", "user", "sslmode", "sslrootcert", "service")


def _runnable(check: Check, conn: psycopg.Connection) -> Check:
    """The fix as it runs, pasted into a shell: psql pointed at this very database (the connection's parameters
    without the password: psql takes it from ~/.pgpass or asks), not at $DATABASE_URL, which is unset on the
    embedded server and may name another database."""
    if check.fix is None or PSQL not in check.fix:
        return check
    given = conn.info.get_parameters()  # what was given, never the password
    where = psycopg.conninfo.make_conninfo(**{k: v for k, v in given.items() if k in _PSQL_KEYS})
    target = f"psql {shlex.quote(where)} -v ON_ERROR_STOP=1"
    return dataclasses.replace(check, fix=check.fix.replace(PSQL, target))


# --- alembic and flags --------------------------------------------------------------------------


def check_alembic(conn: psycopg.Connection) -> tuple[Check, manifest.Objects | None]:
    """The revision, and the objects it should have installed (None: a revision doctor does not check)."""
    head = migrate.head_revision()
    row = conn.execute(
        "SELECT CASE WHEN to_regclass('public.alembic_version') IS NOT NULL"
        " THEN (SELECT string_agg(version_num, ',') FROM public.alembic_version) END"
    ).fetchone()
    current = row[0] if row else None
    objects = manifest.BY_REVISION.get(current or "")
    if current == head:
        return Check("alembic", True, f"at head ({head}): {release.FLAG} released, the sync is always on"), objects
    if current == manifest.PRE_RELEASE_REVISION:
        detail = (
            f"at {current}, the revision before the release: the rollout of {release.FLAG} runs; the release"
            f" ({manifest.RELEASE_REVISION}) waits for `sync-admin rollout check` to pass, then `sync-admin db upgrade`"
        )
        return Check("alembic", True, detail), objects
    known = {script.revision for script in migrate_scripts()}
    if current in known or current is None:
        upgrade = f"sync-admin db upgrade {manifest.PRE_RELEASE_REVISION}"
        return Check("alembic", False, f"at {current or 'no revision'}, head is {head}", upgrade), None
    detail = f"at {current}, which this sync-admin does not know (head {head})"
    return Check("alembic", False, detail, "upgrade sync-admin"), None


def migrate_scripts() -> list[Any]:
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(migrate.alembic_config(None)).walk_revisions())


def check_flags(conn: psycopg.Connection, objects: manifest.Objects) -> list[Check]:
    present = {row[0] for row in conn.execute("SELECT name FROM billing_sync.feature_flags")}
    checks = []
    for flag in manifest.FLAGS:
        done = release.released(conn, flag) if objects.released else None
        if done is not None and flag in present:
            detail = (
                f"{done.summary}, but a row of that name was created since: nothing reads it (the sync is always"
                " on) and the flag commands refuse it"
            )
            delete = f"DELETE FROM billing_sync.feature_flags WHERE name = '{flag}'"
            disable, enable = (f"ALTER TABLE billing_sync.feature_flags {verb} TRIGGER {RETIREMENT_GUARD}"
                               for verb in ("DISABLE", "ENABLE"))  # fmt: skip
            fix = f'{PSQL} -1 -c "{disable}" -c "{delete}" -c "{enable}"'
            checks.append(Check(f"flag {flag}", False, detail, fix, warning=True))
            continue
        if done is not None:
            detail = f"{done.summary}; its row is gone, its history stays (`sync-admin flag history {flag}`)"
            checks.append(Check(f"flag {flag}", True, detail))
            continue
        if flag in present:
            checks.append(Check(f"flag {flag}", True, "row present"))
            continue
        insert = f"INSERT INTO billing_sync.feature_flags (name, enabled) VALUES ('{flag}', false)"
        checks.append(
            Check(
                f"flag {flag}",
                False,
                "row missing: the sync is off for every customer (an unknown flag is off); the fix recreates it"
                f" off, then `sync-admin flag history {flag}` shows the gates it had",
                f'{PSQL} -c "{insert}"',
            )
        )
    return checks


# Refuses deleting the flag row by hand (revision 0012); a stray row after the release is deleted past it.
RETIREMENT_GUARD = "billing_sync_forbid_retirement"
APP_ROLE = "billing_sync_app"
MIRROR = manifest.SWITCH_MIRROR_SCHEMA
MIRRORED_FLAG = manifest.SWITCH_MIRROR_FLAG


def check_switch_mirror(conn: psycopg.Connection, installed: manifest.Objects) -> Check:
    subject = f"schema {MIRROR} (mirror of the kill switch of {MIRRORED_FLAG})"
    row = conn.execute(_MIRROR_STATE, {"flag": MIRRORED_FLAG, "mirror": MIRROR}).fetchone()
    enabled, mirrored, objects, owner, expected_owner = row
    if installed.released:
        if not mirrored:
            return Check(subject, True, "absent: the flag is released, there is no kill switch to mirror")
        detail = f"left by the release (owned by {owner}, which the release could not drop); nothing reads it"
        return Check(subject, False, detail, f'{PSQL} -c "DROP SCHEMA {MIRROR}"', warning=True)
    if mirrored and objects:
        return Check(subject, False, f"holds {objects} object(s): it must stay empty; move them to another schema")
    if mirrored and owner != expected_owner:
        detail = (
            f"owned by {owner}, not by {expected_owner} (the owner of billing_sync): that role can drop it, which"
            " stops the sync while the flag is on, and the kill switch cannot drop it (it leaves it, and the flag is"
            " off all the same)"
        )
        return Check(subject, False, detail, f'{PSQL} -c "ALTER SCHEMA {MIRROR} OWNER TO {expected_owner}"')
    if enabled == mirrored:
        state = "present: the flag is enabled" if enabled else "absent: the flag is disabled"
        return Check(subject, True, state + ("; owned by " + owner if mirrored else ""))
    if enabled:
        detail = "missing while the flag is enabled: the sync triggers skip every customer write"
        return Check(subject, False, detail, f'{PSQL} -c "CREATE SCHEMA {MIRROR}"')
    detail = "present while the flag is disabled: every customer write runs the sync function (which writes nothing)"
    return Check(subject, False, detail, f'{PSQL} -c "DROP SCHEMA {MIRROR}"')


_MIRROR_STATE = """
    SELECT EXISTS (SELECT 1 FROM billing_sync.feature_flags f WHERE f.name = %(flag)s AND f.enabled),
           n.oid IS NOT NULL,
           (SELECT count(*) FROM pg_catalog.pg_depend d
            WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass AND d.refobjid = n.oid),
           pg_catalog.pg_get_userbyid(n.nspowner),
           (SELECT pg_catalog.pg_get_userbyid(b.nspowner)
            FROM pg_catalog.pg_namespace b WHERE b.nspname = 'billing_sync')
    FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %(mirror)s
"""


def check_application_privileges(conn: psycopg.Connection) -> Check:
    """The application's roles must not be able to create schemas in the database: a role that can create
    billing_sync_enabled first owns the kill switch's mirror (docs/operations.md, "Roles and grants")."""
    subject = f"database privileges of {APP_ROLE} and its members"
    rows = conn.execute(_APP_CREATORS, {"app": APP_ROLE}).fetchall()
    if not rows:
        return Check(subject, True, "no CREATE on the database (it cannot create the kill switch's mirror)")
    names = ", ".join(name for (name,) in rows)
    detail = f"CREATE on the database: {names} (a role that can create schemas can take the kill switch's mirror)"
    database = _shell_safe_identifier(conn.info.dbname)
    revokes = " ".join(
        f'-c "REVOKE CREATE ON DATABASE {database} FROM {_shell_safe_identifier(name)}"' for (name,) in rows
    )
    return Check(subject, False, detail, f"{PSQL} {revokes}", warning=True)


def _shell_safe_identifier(name: str) -> str:
    """NAME as an SQL identifier inside a double-quoted shell argument."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '\\"' + name.replace('"', '""').replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`") + '\\"'


_APP_CREATORS = """
    SELECT r.rolname
    FROM pg_catalog.pg_roles r
    WHERE (r.rolname = %(app)s
           OR r.oid IN (SELECT m.member FROM pg_catalog.pg_auth_members m
                        WHERE m.roleid = (SELECT a.oid FROM pg_catalog.pg_roles a WHERE a.rolname = %(app)s)))
      AND NOT r.rolsuper
      AND pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE')
    ORDER BY r.rolname
"""


# --- functions and triggers ---------------------------------------------------------------------


# A queued repair older than this means nothing is repairing the queue (or an open transaction holds it).
REPAIR_QUEUE_MAX_AGE_SECONDS = 60


def check_repair_queue(conn: psycopg.Connection) -> Check:
    """What the sync had to leave is repaired within seconds while `sync-admin heal` runs: an old queue row
    means it does not run (or a long transaction holds the customer)."""
    row = conn.execute(
        "SELECT count(*), count(DISTINCT customer_id), extract(epoch FROM now() - min(recorded_at))"
        " FROM billing_sync.sync_repairs"
    ).fetchone()
    rows, customers, age = (row[0], row[1], row[2]) if row else (0, 0, None)
    if not rows:
        return Check("repair queue", True, "empty")
    detail = f"{customers} customers queued, the oldest {float(age):.0f}s ago"
    if float(age) <= REPAIR_QUEUE_MAX_AGE_SECONDS:
        return Check("repair queue", True, detail)
    return Check(
        "repair queue",
        False,
        f"{detail}: keep `sync-admin heal` (or `watch --heal`) running; if it runs, a long transaction holds them"
        " (pg_stat_activity)",
        "sync-admin heal --once",
    )


def check_two_phase_commit(conn: psycopg.Connection) -> Check:
    """The sync sends notifications (LISTEN/NOTIFY) from the customer write's transaction when it queues a repair or
    records a skip, and PostgreSQL refuses to PREPARE a transaction that notified: where the server allows
    two-phase commit, such a customer transaction would fail at PREPARE TRANSACTION. Said, not failed: only an
    application that uses two-phase commit is concerned."""
    row = conn.execute("SELECT current_setting('max_prepared_transactions')::integer").fetchone()
    allowed = int(row[0]) if row else 0
    if allowed == 0:
        return Check("two-phase commit", True, "off (max_prepared_transactions = 0)")
    return Check(
        "two-phase commit",
        False,
        f"on (max_prepared_transactions = {allowed}): a customer transaction in which the sync queues a repair or"
        " records a skip (any write under REPEATABLE READ or SERIALIZABLE, a value that is not an account, an account"
        " another transaction is creating) notifies, and PREPARE TRANSACTION then fails; run such writes outside"
        " two-phase transactions (docs/concepts.md)",
        "ALTER SYSTEM SET max_prepared_transactions = 0 (then restart), unless the application uses two-phase commit",
        warning=True,
    )


def check_function(expected: manifest.Function, live: LiveFunction | None) -> Check:
    subject = f"function {expected.signature}"
    path = resources.sql_path(expected.file)
    stamp = definitions.stamp_function_sql(expected.signature)
    if live is None:
        revoke = f"REVOKE ALL ON FUNCTION {expected.signature} FROM PUBLIC"
        return Check(subject, False, "missing", f'{PSQL} -1 -f {path} -c "{revoke}" -c "{stamp}"')
    problems = _function_problems(expected, live)
    if not problems:
        return Check(subject, True, f"{_function_traits(expected)}; definition as installed")
    fix = f"{PSQL} -1 -f {path}" + ("" if live.stamp else f' -c "{stamp}"')
    return Check(subject, False, "; ".join(problems), fix)


def _function_problems(expected: manifest.Function, live: LiveFunction) -> list[str]:
    problems = []
    if live.security_definer != expected.security_definer:
        problems.append("SECURITY DEFINER" if live.security_definer else "not SECURITY DEFINER")
    pinned = manifest.PINNED_SEARCH_PATH in live.config
    if expected.pinned and not pinned:
        problems.append("search_path not pinned")
    if expected.security_definer and not pinned:
        problems.append("SECURITY DEFINER without a pinned search_path")
    if live.stamp is None:
        problems.append("no definition hash in its comment (recreated by hand?)")
    elif live.drifted:
        problems.append("definition differs from the one installed (replaced or altered by hand)")
    return problems


def _function_traits(expected: manifest.Function) -> str:
    runs_as = "SECURITY DEFINER" if expected.security_definer else "runs as the caller"
    path = "search_path pinned" if expected.pinned else "no SET search_path by design (schema-qualified names)"
    return f"{runs_as}, {path}"


def check_trigger(expected: manifest.Trigger, live: LiveTrigger | None) -> Check:
    subject = f"trigger {expected.name} on {expected.table}"
    path = resources.sql_path(expected.file)
    reinstall = f'-f {path} -c "{definitions.stamp_trigger_sql(expected.table, expected.name)}"'
    if live is None:
        return Check(subject, False, "missing", f"{PSQL} -1 {LOCK_TIMEOUT} {reinstall}")
    if live.drifted:
        detail = "no definition hash in its comment (recreated by hand?)" if live.stamp is None else (
            "definition differs from the one installed (recreated or altered by hand)"
        )  # fmt: skip
        drop = f'-c "DROP TRIGGER {expected.name} ON {expected.table}"'
        return Check(subject, False, detail, f"{PSQL} -1 {LOCK_TIMEOUT} {drop} {reinstall}")
    state = ENABLED_STATES.get(live.enabled, f"enabled state {live.enabled!r}")
    if live.enabled != "O":
        enable = f'-c "ALTER TABLE {expected.table} ENABLE TRIGGER {expected.name}"'
        return Check(subject, False, f"{state}; definition as installed", f"{PSQL} {LOCK_TIMEOUT} {enable}")
    return Check(subject, True, f"{state}; definition as installed")


# --- everything else in billing_sync ------------------------------------------------------------


def _relations(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname, c.relkind::text FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'billing_sync'"
    )
    return {name: RELKINDS.get(kind, f"relation of kind {kind!r}") for name, kind in rows}


def check_relations(conn: psycopg.Connection, objects: manifest.Objects) -> list[Check]:
    live = _relations(conn)
    missing = [relation for relation in objects.relations if relation.name not in live]
    if not missing:
        return [Check("tables, indexes and sequences", True, f"all {len(objects.relations)} present")]
    return [_missing_relation(relation) for relation in missing]


def _missing_relation(relation: manifest.Relation) -> Check:
    path = resources.sql_path(relation.file)
    if relation.kind == "table" or relation.file.startswith("indexes/"):
        return Check(f"{relation.kind} {relation.name}", False, "missing", f"{PSQL} -1 -f {path}")
    # A primary key or an identity sequence: part of its table's file, which cannot simply run again.
    return Check(f"{relation.kind} {relation.name}", False, f"missing; recreate it as {path} defines it")


def check_unexpected(
    conn: psycopg.Connection,
    objects: manifest.Objects,
    functions: dict[str, LiveFunction],
    triggers: dict[tuple[str, str], LiveTrigger],
) -> list[Check]:
    expected_relations = {relation.name for relation in objects.relations}
    expected_functions = {function.signature for function in objects.functions}
    expected_triggers = {(trigger.table, trigger.name) for trigger in objects.triggers}
    found = [(kind, name) for name, kind in _relations(conn).items() if name not in expected_relations]
    found += [("function", signature) for signature in functions if signature not in expected_functions]
    found += [("trigger", f"{name} ON {table}") for table, name in triggers if (table, name) not in expected_triggers]
    found += [("type", name) for (name,) in conn.execute(_STANDALONE_TYPES)]
    found += [("operator", name) for (name,) in conn.execute(_OPERATORS)]
    if not found:
        return [Check("billing_sync schema", True, "no unexpected objects")]
    return [_unexpected(kind, name) for kind, name in sorted(found)]


def _unexpected(kind: str, name: str) -> Check:
    return Check(
        f"{kind} {name}",
        False,
        "not installed by the migrations: made by hand (drop it if nothing needs it, as the fix does),"
        " or by a newer sync-admin (then upgrade sync-admin instead)",
        f'{PSQL} -c "DROP {kind.upper()} {name}"',
    )


# Types of their own (domains, enums, ranges): not a table's row type, not an array type.
_STANDALONE_TYPES = """
    SELECT pg_catalog.format('%I.%I', n.nspname, t.typname)
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'billing_sync' AND t.typrelid = 0
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
"""
_OPERATORS = """
    SELECT o.oid::regoperator::text FROM pg_catalog.pg_operator o
    WHERE o.oprnamespace = 'billing_sync'::regnamespace
"""
