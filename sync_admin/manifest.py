"""Every database object the migrations install in billing_sync (and the sync's triggers on customers),
as the head revision has them: what `sync-admin doctor` checks the database against.

The objects are listed as the revision before the release (0012) has them; the release (0013) is described at
the end as what it replaces and drops (RELEASED). One place to extend. A revision that adds an object adds its
entry here; one that replaces an object
(a new *_vN.sql file) changes the entry's file and revision; one that drops an object removes it.
A revision that installs or replaces a function or a trigger also stamps its definition hash
(`SELECT billing_sync.stamp_definition_hash(...)`, see sql/functions/stamp_definition_hash_v1.sql),
as revision 0004 does for everything before it; tests/test_doctor.py fails when an object of the
database is missing here or an entry is missing from the database.
"""

from __future__ import annotations

from dataclasses import dataclass

PINNED_SEARCH_PATH = "search_path=pg_catalog, pg_temp"
FLAGS = ("account_data_persistence",)
# The sync triggers' WHEN asks whether this schema exists instead of reading the flag (revision 0006,
# sql/functions/sync_switch_v1.sql): it must exist exactly while the kill switch of that flag is on, and stay empty.
SWITCH_MIRROR_SCHEMA = "billing_sync_enabled"
SWITCH_MIRROR_FLAG = "account_data_persistence"


@dataclass(frozen=True)
class Function:
    signature: str  # as regprocedure prints it under search_path = pg_catalog
    file: str  # the sql/ file that installs the version at head
    revision: str
    security_definer: bool
    # True: SET search_path = pg_catalog, pg_temp. False, by design: every name in the body is
    # schema-qualified instead, because a SET clause would cost a GUC save/restore on every call of a
    # hot-path function, or stop the planner from inlining a SQL function.
    pinned: bool = True


@dataclass(frozen=True)
class Trigger:
    table: str
    name: str
    file: str
    revision: str


@dataclass(frozen=True)
class Relation:
    name: str
    kind: str  # table, index, sequence
    file: str  # the file that creates it (a table's file creates its primary key and identity sequence)
    revision: str


def definer(signature: str, file: str, revision: str) -> Function:
    """SECURITY DEFINER with a pinned search_path: runs as the owner, for any caller."""
    return Function(signature, file, revision, security_definer=True)


def invoker(signature: str, file: str, revision: str) -> Function:
    """Runs as the caller, search_path pinned."""
    return Function(signature, file, revision, security_definer=False)


def qualified(signature: str, file: str, revision: str) -> Function:
    """Runs as the caller, no SET clause: every name in it is schema-qualified (hot path, or inlined)."""
    return Function(signature, file, revision, security_definer=False, pinned=False)


FUNCTIONS = (
    qualified("billing_sync.normalize_zuora_account_id(text)", "functions/normalize_zuora_account_id_v2.sql", "0008"),
    invoker("billing_sync.touch_updated_at()", "functions/touch_updated_at_v1.sql", "0001"),
    definer("billing_sync.record_feature_flag_event()", "functions/record_feature_flag_event_v1.sql", "0001"),
    invoker("billing_sync.forbid_truncate()", "functions/forbid_truncate_v1.sql", "0001"),
    qualified("billing_sync.murmur3_32(bytea,bigint)", "functions/murmur3_32_v1.sql", "0002"),
    qualified("billing_sync.unleash_bucket(text,bigint)", "functions/unleash_bucket_v1.sql", "0002"),
    definer("billing_sync.flag_enabled_for(text,bigint)", "functions/flag_enabled_for_v1.sql", "0002"),
    qualified("billing_sync.customers_in_rollout(text)", "functions/customers_in_rollout_v1.sql", "0003"),
    definer("billing_sync.backfill_batch(bigint,integer)", "functions/backfill_batch_v2.sql", "0007"),
    definer("billing_sync.account_drift(integer)", "functions/account_drift_v2.sql", "0008"),
    invoker("billing_sync.stamp_definition_hash(regclass,oid)", "functions/stamp_definition_hash_v1.sql", "0004"),
    definer("billing_sync.sync_switch()", "functions/sync_switch_v2.sql", "0010"),
    definer("billing_sync.sync_customers_inserted()", "functions/sync_customers_inserted_v3.sql", "0008"),
    definer("billing_sync.sync_customer_updated()", "functions/sync_customer_updated_v2.sql", "0007"),
    invoker("billing_sync.claim_account(text)", "functions/claim_account_v2.sql", "0008"),
    invoker("billing_sync.claim_accounts(text[])", "functions/claim_accounts_v2.sql", "0008"),
    qualified("billing_sync.claim_regions()", "functions/claim_regions_v1.sql", "0008"),
    qualified("billing_sync.claim_region(text)", "functions/claim_region_v1.sql", "0008"),
    invoker("billing_sync.resolve_account(text)", "functions/resolve_account_v1.sql", "0007"),
    definer("billing_sync.sync_customers(bigint[])", "functions/sync_customers_v1.sql", "0007"),
    definer("billing_sync.drifted_customers(integer)", "functions/drifted_customers_v1.sql", "0007"),
    definer("billing_sync.repair_queued(integer,bigint)", "functions/repair_queued_v1.sql", "0007"),
    definer("billing_sync.sync_customer_removed()", "functions/sync_customer_removed_v1.sql", "0007"),
    definer("billing_sync.sync_customers_truncated()", "functions/sync_customers_truncated_v1.sql", "0007"),
    invoker("billing_sync.forbid_flag_retirement()", "functions/forbid_flag_retirement_v1.sql", "0012"),
    invoker("billing_sync.release_blockers(text,numeric)", "functions/release_blockers_v1.sql", "0012"),
)

TRIGGERS = (
    Trigger(
        "public.customers", "billing_sync_customer_insert", "triggers/customers_billing_sync_insert_v2.sql", "0006"
    ),
    Trigger(
        "public.customers", "billing_sync_customer_update", "triggers/customers_billing_sync_update_v2.sql", "0006"
    ),
    Trigger(
        "public.customers", "billing_sync_customer_delete", "triggers/customers_billing_sync_delete_v1.sql", "0007"
    ),
    Trigger("public.customers", "billing_sync_customer_rekey", "triggers/customers_billing_sync_rekey_v1.sql", "0007"),
    Trigger(
        "public.customers",
        "billing_sync_customer_truncate",
        "triggers/customers_billing_sync_truncate_v1.sql",
        "0007",
    ),
    Trigger(
        "billing_sync.feature_flags",
        "billing_sync_touch_updated_at",
        "triggers/feature_flags_touch_updated_at_v1.sql",
        "0001",
    ),
    Trigger(
        "billing_sync.feature_flags", "billing_sync_sync_switch", "triggers/feature_flags_sync_switch_v1.sql", "0006"
    ),
    Trigger("billing_sync.feature_flags", "billing_sync_audit", "triggers/feature_flags_audit_v1.sql", "0001"),
    Trigger(
        "billing_sync.feature_flags",
        "billing_sync_forbid_truncate",
        "triggers/feature_flags_forbid_truncate_v1.sql",
        "0001",
    ),
    Trigger(
        "billing_sync.feature_flags",
        "billing_sync_forbid_retirement",
        "triggers/feature_flags_forbid_retirement_v1.sql",
        "0012",
    ),
    Trigger(
        "billing_sync.feature_flag_actors", "billing_sync_audit", "triggers/feature_flag_actors_audit_v1.sql", "0002"
    ),
    Trigger(
        "billing_sync.feature_flag_actors",
        "billing_sync_forbid_truncate",
        "triggers/feature_flag_actors_forbid_truncate_v1.sql",
        "0002",
    ),
)


RELATIONS = (
    Relation("billing_sync.feature_flags", "table", "tables/feature_flags_v1.sql", "0001"),
    Relation("billing_sync.feature_flags_pkey", "index", "tables/feature_flags_v1.sql", "0001"),
    Relation("billing_sync.feature_flag_events", "table", "tables/feature_flag_events_v1.sql", "0001"),
    Relation("billing_sync.feature_flag_events_pkey", "index", "tables/feature_flag_events_v1.sql", "0001"),
    Relation("billing_sync.feature_flag_events_id_seq", "sequence", "tables/feature_flag_events_v1.sql", "0001"),
    Relation(
        "billing_sync.feature_flag_events_flag_name_occurred_at_idx",
        "index",
        "indexes/feature_flag_events_flag_name_occurred_at_idx_v1.sql",
        "0001",
    ),
    Relation("billing_sync.feature_flag_actors", "table", "tables/feature_flag_actors_v1.sql", "0002"),
    Relation("billing_sync.feature_flag_actors_pkey", "index", "tables/feature_flag_actors_v1.sql", "0002"),
    Relation("billing_sync.backfill_runs", "table", "tables/backfill_runs_v1.sql", "0003"),
    Relation("billing_sync.backfill_runs_pkey", "index", "tables/backfill_runs_v1.sql", "0003"),
    Relation("billing_sync.backfill_runs_id_seq", "sequence", "tables/backfill_runs_v1.sql", "0003"),
    Relation(
        "billing_sync.backfill_runs_one_running_idx", "index", "indexes/backfill_runs_one_running_idx_v1.sql", "0003"
    ),
    Relation("billing_sync.sync_events", "table", "tables/sync_events_v1.sql", "0004"),
    Relation("billing_sync.sync_events_pkey", "index", "tables/sync_events_v1.sql", "0004"),
    Relation("billing_sync.sync_events_id_seq", "sequence", "tables/sync_events_v1.sql", "0004"),
    Relation("billing_sync.sync_events_occurred_at_idx", "index", "indexes/sync_events_occurred_at_idx_v1.sql", "0004"),
    Relation(
        "billing_sync.sync_events_transaction_id_idx", "index", "indexes/sync_events_transaction_id_idx_v1.sql", "0011"
    ),
    Relation("billing_sync.sync_repairs", "table", "tables/sync_repairs_v1.sql", "0007"),
    Relation("billing_sync.sync_repairs_pkey", "index", "tables/sync_repairs_v1.sql", "0007"),
    Relation("billing_sync.sync_repairs_id_seq", "sequence", "tables/sync_repairs_v1.sql", "0007"),
    Relation(
        "billing_sync.sync_repairs_customer_id_idx", "index", "indexes/sync_repairs_customer_id_idx_v1.sql", "0007"
    ),
)


# --- the release (revision 0013) ----------------------------------------------------------------
# The objects above are those of the revision before the release (0012), where the rollout runs. The release
# replaces the sync's functions and triggers with versions that read no flag and drops the kill switch's mirror
# with its function and trigger; tables, indexes and sequences stay (the audit log keeps the flag's history).
PRE_RELEASE_REVISION = "0012"
RELEASE_REVISION = "0013"
_RELEASED_FUNCTIONS = {
    "billing_sync.sync_customers_inserted()": definer(
        "billing_sync.sync_customers_inserted()", "functions/sync_customers_inserted_v4.sql", RELEASE_REVISION
    ),
    "billing_sync.sync_customer_updated()": definer(
        "billing_sync.sync_customer_updated()", "functions/sync_customer_updated_v3.sql", RELEASE_REVISION
    ),
    "billing_sync.customers_in_rollout(text)": qualified(
        "billing_sync.customers_in_rollout(text)", "functions/customers_in_rollout_v2.sql", RELEASE_REVISION
    ),
    "billing_sync.flag_enabled_for(text,bigint)": definer(
        "billing_sync.flag_enabled_for(text,bigint)", "functions/flag_enabled_for_v2.sql", RELEASE_REVISION
    ),
}
_RELEASED_TRIGGERS = {
    ("public.customers", "billing_sync_customer_insert"): Trigger(
        "public.customers", "billing_sync_customer_insert", "triggers/customers_billing_sync_insert_v3.sql", "0013"
    ),
    ("public.customers", "billing_sync_customer_update"): Trigger(
        "public.customers", "billing_sync_customer_update", "triggers/customers_billing_sync_update_v3.sql", "0013"
    ),
}
_GONE_AT_RELEASE = {"billing_sync.sync_switch()", ("billing_sync.feature_flags", "billing_sync_sync_switch")}


@dataclass(frozen=True)
class Objects:
    """What a revision has installed: the functions, triggers and relations doctor checks."""

    revision: str
    functions: tuple[Function, ...]
    triggers: tuple[Trigger, ...]
    relations: tuple[Relation, ...]
    released: bool


PRE_RELEASE = Objects(PRE_RELEASE_REVISION, FUNCTIONS, TRIGGERS, RELATIONS, released=False)
RELEASED = Objects(
    RELEASE_REVISION,
    tuple(_RELEASED_FUNCTIONS.get(f.signature, f) for f in FUNCTIONS if f.signature not in _GONE_AT_RELEASE),
    tuple(_RELEASED_TRIGGERS.get((t.table, t.name), t) for t in TRIGGERS if (t.table, t.name) not in _GONE_AT_RELEASE),
    RELATIONS,
    released=True,
)
BY_REVISION = {PRE_RELEASE_REVISION: PRE_RELEASE, RELEASE_REVISION: RELEASED}
