"""The live definitions of billing_sync's functions and the sync's triggers, with their definition hashes.

The migrations store a hash of each definition in the object's comment at install time
(sql/functions/stamp_definition_hash_v1.sql); `sync-admin doctor` compares it with the hash of the
definition as it is now. The canonical text hashed here is canonical form v1 and must stay identical
to the stamp function's (tests/test_doctor.py checks they agree on every object). It is computed by
this query, not by calling the stamp function, so that a function replaced by hand cannot vouch for
itself. Both run with search_path = pg_catalog, pg_temp, so every name outside pg_catalog is printed
schema-qualified, whatever the caller's search_path.

Why these parts, and why stable across PostgreSQL 15-18 (and a dump/restore or pg_upgrade between
them): a function's body is stored as written (prosrc) and its attributes are catalog values; only
BEGIN ATOMIC bodies and a trigger's WHEN clause are deparsed, and those deparse the same way in
15-18. pg_get_functiondef's full text is avoided (its layout is not an interface, and it includes
planner estimates); OIDs, owners, privileges and comments are never part of the hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

STAMP_PREFIX = "sync-admin:definition-sha256-v1:"


def stamp_function_sql(signature: str) -> str:
    """The statement that stamps a function's definition hash in its comment (revisions, doctor's fixes)."""
    return f"SELECT billing_sync.stamp_definition_hash('pg_catalog.pg_proc', '{signature}'::regprocedure)"


def stamp_trigger_sql(table: str, name: str) -> str:
    """The statement that stamps a trigger's definition hash in its comment (revisions, doctor's fixes)."""
    return (
        "SELECT billing_sync.stamp_definition_hash('pg_catalog.pg_trigger', t.oid) FROM pg_catalog.pg_trigger t"
        f" WHERE t.tgrelid = '{table}'::regclass AND t.tgname = '{name}'"
    )


_HASH = "'" + STAMP_PREFIX + "' || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({}, 'UTF8')), 'hex')"

FUNCTION_CANONICAL_V1 = """pg_catalog.concat_ws(E'\\n',
    'function ' || p.oid::regprocedure::text,
    'returns ' || pg_catalog.pg_get_function_result(p.oid),
    'language ' || l.lanname,
    'security definer ' || p.prosecdef::text,
    'volatility ' || p.provolatile::text,
    'strict ' || p.proisstrict::text,
    'parallel ' || p.proparallel::text,
    'leakproof ' || p.proleakproof::text,
    'config ' || coalesce(pg_catalog.array_to_string(p.proconfig, ' | '), ''),
    'body',
    CASE WHEN p.prosqlbody IS NULL THEN p.prosrc ELSE pg_catalog.pg_get_function_sqlbody(p.oid) END)"""

TRIGGER_CANONICAL_V1 = "'trigger ' || pg_catalog.pg_get_triggerdef(t.oid, false)"

FUNCTIONS_QUERY = f"""
    SELECT p.oid::regprocedure::text, p.prosecdef, coalesce(p.proconfig, '{{}}'),
           pg_catalog.obj_description(p.oid, 'pg_proc'), {_HASH.format(FUNCTION_CANONICAL_V1)}
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang
    WHERE p.pronamespace = 'billing_sync'::regnamespace
    ORDER BY 1
"""

# The sync's triggers: every trigger of a billing_sync table, and the triggers on public.customers
# that are named billing_sync_* or call a billing_sync function (so a leftover one is found too).
TRIGGERS_QUERY = f"""
    SELECT t.tgrelid::regclass::text, t.tgname, t.tgenabled::text,
           pg_catalog.obj_description(t.oid, 'pg_trigger'), {_HASH.format(TRIGGER_CANONICAL_V1)}
    FROM pg_catalog.pg_trigger t
    JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    JOIN pg_catalog.pg_proc f ON f.oid = t.tgfoid
    WHERE NOT t.tgisinternal
      AND (c.relnamespace = 'billing_sync'::regnamespace
           OR (t.tgrelid = 'public.customers'::regclass
               AND (t.tgname LIKE 'billing\\_sync\\_%' OR f.pronamespace = 'billing_sync'::regnamespace)))
    ORDER BY 1, 2
"""


@dataclass(frozen=True)
class LiveFunction:
    signature: str
    security_definer: bool
    config: tuple[str, ...]
    stamp: str | None  # the comment: the hash stored at install time, if any
    live_hash: str

    @property
    def drifted(self) -> bool:
        return self.stamp != self.live_hash


@dataclass(frozen=True)
class LiveTrigger:
    table: str
    name: str
    enabled: str  # pg_trigger.tgenabled: O origin (plain ENABLE), D disabled, R replica only, A always
    stamp: str | None
    live_hash: str

    @property
    def drifted(self) -> bool:
        return self.stamp != self.live_hash


def read(conn: psycopg.Connection) -> tuple[dict[str, LiveFunction], dict[tuple[str, str], LiveTrigger]]:
    """The functions by signature and the triggers by (table, name), read in one snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        functions = [LiveFunction(s, d, tuple(c), st, h) for s, d, c, st, h in conn.execute(FUNCTIONS_QUERY)]
        triggers = [LiveTrigger(*row) for row in conn.execute(TRIGGERS_QUERY)]
    return {f.signature: f for f in functions}, {(t.table, t.name): t for t in triggers}
