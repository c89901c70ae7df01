"""The bridge: the database flag follows its Unleash flag, in one audited transaction per change.

The rules (docs/unleash.md):

* Unleash is the control plane. The gates (everyone, percentage, actors) follow Unleash's strategies; a gate
  changed in the database is put back at the next sync, and the report names whose change it replaces.
* Off wins, from either side. Unleash switched off is applied at once, even while its strategies cannot be
  represented (off for every customer is exact) and even over a kill switch switched back on in the database.
  A kill switch pulled in the database (SQL or `flag disable`: any change not made by the bridge) is never
  switched back on by the bridge: while Unleash says on, that is a conflict, nothing is applied, and it is reported
  until a person resolves it (`sync-admin unleash resolve --accept-unleash | --keep-local`, or `flag resume`).
* What the database cannot represent, or a flag Unleash does not serve (archived, deleted, another project), is
  never approximated: nothing applied (beyond the off above), the reason reported, the last good state kept.
* Unleash unreadable: nothing changes (UnleashUnreadable, exit 4); the follow service backs off and retries.
* After the release (revision 0013) there is no flag to follow: the bridge says so and applies nothing (exit 7).

The bridge's own changes are those made with application_name `sync-admin unleash` (the audit log records it);
its audit rows name Unleash as the actor (`unleash:<who changed it there>` when an admin token shows the event
log) and the Unleash state and event as the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from sync_admin import db, flags, release, schema
from sync_admin.errors import BadInput, SyncAdminError
from sync_admin.unleash import Reading, Source
from sync_admin.unleash_mapping import Gates

FLAG = release.FLAG
APPLICATION_NAME = "sync-admin unleash"
ACTOR = "unleash"
# The flag row's lock is held by a person's change for milliseconds; a longer wait means something else holds it
# (a migration): the bridge gives up and tries again rather than queue behind it.
LOCK_TIMEOUT = "5s"
_MAX_ACTORS_SHOWN = 10


class NotApplicable(SyncAdminError):
    """Unleash's flag cannot be represented, or Unleash does not serve it: nothing (but an off) applied."""

    exit_code = 5


class Conflict(SyncAdminError):
    """A kill switch pulled in the database, Unleash on: nothing applied until a person resolves it."""

    exit_code = 6


class Released(SyncAdminError):
    """The flag was released (revision 0013): nothing to follow."""

    exit_code = 7

    def __init__(self, done: release.Release) -> None:
        super().__init__(
            f"{done.flag} was {done.summary}: the sync is always on and the flag no longer exists, so the bridge has"
            " nothing to apply; archive the flag in Unleash and stop the bridge (the rollback of the release,"
            f" `{release.ROLLBACK_COMMAND}`, brings the flag back)"
        )


@dataclass(frozen=True)
class Plan:
    """What the database should become (None: left as it is), and why not all of Unleash's state applies."""

    before: flags.Flag
    enabled: bool | None
    gates: Gates | None
    unleash: str  # Unleash's state in words
    conflict: str | None = None
    problems: tuple[str, ...] = ()
    replaces: str | None = None  # the local change this plan undoes, in words

    @property
    def after(self) -> flags.Flag:
        flag = self.before
        if self.enabled is not None:
            flag = replace(flag, enabled=self.enabled)
        if self.gates is not None:
            flag = replace(
                flag,
                everyone=self.gates.everyone,
                percentage=self.gates.percentage,
                actors=tuple(sorted(self.gates.actors)),
            )
        return flag

    def changes(self) -> list[str]:
        """One line per column that changes: `kill switch: off -> on`, `actors: +101, +102`."""
        before, after = self.before, self.after
        lines = []
        if before.enabled != after.enabled:
            lines.append(f"kill switch: {_switch(before.enabled)} -> {_switch(after.enabled)}")
        if before.everyone != after.everyone:
            lines.append(f"everyone: {_yes(before.everyone)} -> {_yes(after.everyone)}")
        if before.percentage != after.percentage:
            lines.append(f"percentage: {before.percentage} % -> {after.percentage} %")
        added = sorted(set(after.actors) - set(before.actors))
        removed = sorted(set(before.actors) - set(after.actors))
        if added or removed:
            lines.append("actors: " + "; ".join(part for part in (_ids("+", added), _ids("-", removed)) if part))
        return lines

    def failure(self) -> SyncAdminError | None:
        """What the exit code says about this plan: a conflict (6), something not applied (5), or None."""
        if self.conflict is not None:
            return Conflict(self.conflict)
        if self.problems:
            off = "the kill switch follows Unleash's off, the rest is " if self.enabled is False else ""
            problems = "; ".join(self.problems)
            return NotApplicable(f"{off}not applied: {problems}; the database keeps its last good state")
        return None


def _switch(enabled: bool) -> str:
    return "on" if enabled else "off (pulled)"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _ids(sign: str, ids: list[int]) -> str:
    shown = ", ".join(f"{sign}{customer}" for customer in ids[:_MAX_ACTORS_SHOWN])
    more = f" and {len(ids) - _MAX_ACTORS_SHOWN} more" if len(ids) > _MAX_ACTORS_SHOWN else ""
    return shown + more


# --- planning -----------------------------------------------------------------------------------------------


def local_kill(conn: psycopg.Connection, flag: flags.Flag) -> flags.FlagEvent | None:
    """The kill switch pulled in the database by someone other than the bridge, if it is still pulled."""
    if flag.enabled:
        return None
    kill = flags.last_kill(conn, flag.name)
    if kill is None or kill.application_name == APPLICATION_NAME:
        return None
    return kill


def _last_local_change(conn: psycopg.Connection) -> str | None:
    """The newest change to the flag made outside the bridge since its own last change, in words."""
    row = conn.execute(
        """
        SELECT coalesce(actor, database_user), occurred_at, reason, application_name
        FROM billing_sync.feature_flag_events
        WHERE flag_name = %(flag)s
          AND (table_name, operation) IN (('feature_flags', 'UPDATE'), ('feature_flag_actors', 'INSERT'),
                                          ('feature_flag_actors', 'DELETE'))
          AND application_name IS DISTINCT FROM %(bridge)s
          AND id > coalesce((SELECT max(id) FROM billing_sync.feature_flag_events
                             WHERE flag_name = %(flag)s AND application_name = %(bridge)s), 0)
        ORDER BY id DESC
        LIMIT 1
        """,
        {"flag": FLAG, "bridge": APPLICATION_NAME},
    ).fetchone()
    if row is None:
        return None
    who, when, reason, application = row
    why = f" ({reason})" if reason else ""
    return f"the database's change by {who} at {when:%Y-%m-%d %H:%M:%S %Z}{why} with {application or 'SQL'}"


def plan(
    conn: psycopg.Connection, reading: Reading, *, lock: bool = False, accept: bool = False, env: str = "NAME"
) -> Plan:
    """What applying READING to the database means now. lock=True takes the flag row's lock (inside the caller's
    transaction); accept=True is `resolve --accept-unleash`: a person releases the local kill switch."""
    flag = flags.get_flag(conn, FLAG, lock=lock)  # FlagReleased (exit 2) is turned into Released by the callers
    unleash = reading.flag
    if unleash is None:
        if reading.archived is not None:
            why = f"{reading.archived.type.removeprefix('feature-')} ({reading.archived.describe()})"
        else:
            why = "archived, deleted, or in a project the token does not read"
        return Plan(
            flag,
            None,
            None,
            "not served",
            problems=(
                f"Unleash does not serve {FLAG} to this token: {why}; the database flag is retired by its release"
                " (`sync-admin rollout check`, then `sync-admin db upgrade`), never by archiving it in Unleash",
            ),
        )
    words = unleash.describe()
    if not unleash.enabled:
        # Off is exact whatever the strategies say: applied, with the gates when they can be represented.
        result = Plan(flag, False, unleash.gates, words, problems=unleash.problems)
    elif unleash.gates is None:
        return Plan(flag, None, None, words, problems=unleash.problems)
    else:
        kill = None if accept else local_kill(conn, flag)
        if kill is not None:
            who = kill.actor or kill.database_user
            why = f" ({kill.reason})" if kill.reason else ""
            return Plan(
                flag,
                None,
                None,
                words,
                conflict=(
                    f"the kill switch was pulled in the database by {who} at {kill.occurred_at:%Y-%m-%d %H:%M:%S %Z}"
                    f"{why} and Unleash says {words}: the bridge does not switch it back on, nothing applied;"
                    f" a person resolves it: `sync-admin --env {env} unleash resolve --accept-unleash` (on, as"
                    " Unleash says) or `--keep-local` (switch it off in Unleash too)"
                ),
            )
        result = Plan(flag, True, unleash.gates, words)
    if result.changes():
        result = replace(result, replaces=_last_local_change(conn))
    return result


# --- applying -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    applied: bool
    dry_run: bool
    attribution: str | None = None  # who changed it in Unleash, as recorded

    def lines(self) -> list[str]:
        changes = self.plan.changes()
        lines = [f"Unleash says {FLAG} is {self.plan.unleash}"]
        if not changes:
            lines.append("the database already follows it: nothing to change")
        else:
            verb = "would change" if self.dry_run else "changed"
            lines += [f"{verb}: {line}" for line in changes]
            if self.plan.replaces:
                lines.append(f"{'would replace' if self.dry_run else 'replaced'} {self.plan.replaces}")
            if self.attribution:
                lines.append(f"recorded as: {self.attribution}")
            if self.dry_run:
                lines.append("dry run: nothing changed")
        return lines


def attribution(source: Source, reading: Reading) -> tuple[str, str]:
    """(actor, reason) for the audit row: Unleash, and who changed the flag there when the event log says."""
    event, unknown = source.latest_event()
    state = reading.flag.describe() if reading.flag is not None else "not served"
    where = f"Unleash {source.config.environment}: {state}"
    if reading.revision is not None:
        where += f" (revision {reading.revision})"
    if event is not None:
        return f"{ACTOR}:{event.created_by}", f"{where}; {event.describe()}"
    if unknown is not None:
        return ACTOR, f"{where}; who changed it is unknown: {unknown}"
    return ACTOR, where


def apply(conn: psycopg.Connection, change: Plan, actor: str, reason: str) -> None:
    """CHANGE in the caller's transaction, audited as ACTOR for REASON (the flag row is locked by plan(lock=True))."""
    before, after = change.before, change.after
    flags.set_audit_context(conn, actor, reason)
    removed = sorted(set(before.actors) - set(after.actors))
    added = sorted(set(after.actors) - set(before.actors))
    if removed:
        conn.execute(
            "DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = %s AND customer_id = ANY(%s::bigint[])",
            (FLAG, removed),
        )
    if added:
        conn.execute(
            "INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id)"
            " SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
            (FLAG, added),
        )
    if (before.enabled, before.everyone, before.percentage) != (after.enabled, after.everyone, after.percentage):
        conn.execute(
            "UPDATE billing_sync.feature_flags SET enabled = %s, everyone = %s, percentage = %s WHERE name = %s",
            (after.enabled, after.everyone, after.percentage, FLAG),
        )


def step(
    conn: psycopg.Connection,
    source: Source,
    reading: Reading,
    *,
    dry_run: bool = False,
    accept: bool = False,
    by: Callable[[str, str], tuple[str, str]] | None = None,
) -> Outcome:
    """Plan READING against the database and, unless dry_run, apply it in one transaction under the flag row's
    lock (planned again there: a person's change may have come in between). BY rewrites (actor, reason)."""
    try:
        env = source.config.name
        preview = plan(conn, reading, accept=accept, env=env)
        if dry_run or not preview.changes():
            return Outcome(preview, applied=False, dry_run=dry_run)
        actor, reason = attribution(source, reading)
        if by is not None:
            actor, reason = by(actor, reason)
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
            final = plan(conn, reading, lock=True, accept=accept, env=env)
            if final.changes():
                apply(conn, final, actor, reason)
    except release.FlagReleased as exc:
        raise Released(exc.release) from None
    return Outcome(final, applied=bool(final.changes()), dry_run=False, attribution=f"{actor}: {reason}")


def connect(url: str) -> psycopg.Connection:
    """The bridge's connection: its application_name is how the audit log tells its changes from a person's."""
    return schema.migrated(db.connect_service(url, APPLICATION_NAME))


def require_not_released(conn: psycopg.Connection) -> None:
    done = release.released(conn, FLAG)
    if done is not None:
        raise Released(done)


# --- resolving a conflict -------------------------------------------------------------------------------------


def resolve(conn: psycopg.Connection, source: Source, *, accept: bool, actor: str, reason: str | None) -> list[str]:
    """`unleash resolve`: --accept-unleash applies Unleash's state, the kill switch on, as ACTOR; --keep-local
    switches the flag off in Unleash, so that both say off. BadInput when there is no conflict to resolve."""
    require_not_released(conn)
    reading = source.read()
    current = plan(conn, reading, env=source.config.name)
    if current.conflict is None:
        state = current.failure()
        why = f" ({state})" if state is not None else ""
        raise BadInput(f"no conflict to resolve: the kill switch was not pulled in the database against Unleash{why}")
    why = f": {reason}" if reason else ""
    if accept:

        def by(_: str, unleash_reason: str) -> tuple[str, str]:
            return actor, f"unleash resolve --accept-unleash{why}; {unleash_reason}"

        outcome = step(conn, source, reading, accept=True, by=by)
        return outcome.lines()
    flag = reading.flag
    assert flag is not None  # a conflict needs Unleash's flag
    source.switch_off(flag.project or "default")
    return [
        f"switched {FLAG} off in Unleash ({source.config.environment}, project {flag.project or 'default'}) as the"
        " admin token's user: Unleash and the database both say off",
        "the kill switch stays pulled in the database: when Unleash is switched on again, release it with"
        " `sync-admin unleash resolve --accept-unleash` (or `sync-admin flag resume`)",
    ]


def as_json(outcome: Outcome) -> dict[str, Any]:
    before, after = outcome.plan.before, outcome.plan.after
    failure = outcome.plan.failure()
    return {
        "flag": FLAG,
        "unleash": outcome.plan.unleash,
        "changes": outcome.plan.changes(),
        "applied": outcome.applied,
        "dry_run": outcome.dry_run,
        "before": {
            "enabled": before.enabled,
            "everyone": before.everyone,
            "percentage": before.percentage,
            "actors": list(before.actors),
        },
        "after": {
            "enabled": after.enabled,
            "everyone": after.everyone,
            "percentage": after.percentage,
            "actors": list(after.actors),
        },
        "conflict": outcome.plan.conflict,
        "problems": list(outcome.plan.problems),
        "replaces": outcome.plan.replaces,
        "recorded_as": outcome.attribution,
        "exit_code": failure.exit_code if failure is not None else 0,
    }
