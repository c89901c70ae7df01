"""What an Unleash flag means for the database flag: its environment switch and strategies, mapped to the kill
switch and the gates exactly, or refused with the reason.

The database flag is on for a customer when the kill switch is on and (everyone, or the customer is an actor, or
its bucket is within the percentage). An Unleash flag is on for a user when its environment is enabled and one of
its strategies matches. The mapping, for strategies that are the same function of the customer id:

* the environment switch -> the kill switch (`enabled`); both keep the rest when switched off;
* `default`, or `flexibleRollout` at 100 % (stickiness default, userId or random), or no strategy while switched on
  -> everyone (no strategy while switched off: no gate);
* `flexibleRollout` at 1-99 % with stickiness default or userId and groupId the flag's name -> the percentage
  (both compute murmur3("<flag>:<id>") % 100 + 1; two of them are the larger one);
* `userWithId`, or `flexibleRollout` at 100 % / `default` with one `userId IN` constraint -> actors (their union);
* `flexibleRollout` at 0 % -> nothing (it matches no one, whatever else it says).

Anything else (other constraints, segments, another groupId or stickiness, other strategies, variants that split
users, dependencies on other flags) would be an approximation: refused, with the reason. Shape errors in the
document (a missing field, a wrong type) are UnleashUnreadable: the answer is not Unleash's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sync_admin.errors import BadInput
from sync_admin.terminal import printable
from sync_admin.unleash_client import UnleashUnreadable

# The customer ids a list may hold: positive bigints written as the application writes them (str(id)): Unleash
# compares strings, so "042" is not customer 42 there and must not become it here.
_CUSTOMER_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_CUSTOMER_ID = 2**63 - 1
MAX_ACTORS = 10_000
_ROLLOUT = re.compile(r"0|[1-9][0-9]?|100")
_PERCENT_STICKINESS = ("default", "userId")
_EVERYONE_STICKINESS = ("default", "userId", "random")  # at 100 % these match every customer


@dataclass(frozen=True)
class Gates:
    everyone: bool = False
    percentage: int = 0
    actors: frozenset[int] = field(default_factory=frozenset)

    def describe(self) -> str:
        """`everyone`, `25 % + 2 actors`, `no gate`."""
        parts = ["everyone"] if self.everyone else []
        if self.percentage:
            parts.append(f"{self.percentage} %")
        if self.actors:
            parts.append(f"{len(self.actors)} actor{'s' if len(self.actors) != 1 else ''}")
        return " + ".join(parts) or "no gate"


@dataclass(frozen=True)
class UnleashFlag:
    """The flag as Unleash serves it to one environment, mapped. `gates` is None when it cannot be represented;
    `problems` then says why."""

    name: str
    project: str | None
    enabled: bool
    gates: Gates | None
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.gates is None:
            return f"{'on' if self.enabled else 'off'}, with strategies the database cannot represent"
        return f"{'on' if self.enabled else 'off'}: {self.gates.describe()}"


class WrongEnvironment(BadInput):
    """The token reads another Unleash environment than the configuration names."""


def read_flag(document: Any, flag: str, environment: str) -> UnleashFlag | None:
    """FLAG from a /api/client/features answer; None when the answer does not list it (archived, deleted, or
    outside the token's projects)."""
    where = Where("the answer")
    if not isinstance(document, dict):
        raise where.wrong("an object")
    query = document.get("query")
    if query is not None:
        if not isinstance(query, dict):
            raise where.at("query").wrong("an object")
        served = query.get("environment")
        if isinstance(served, str) and served != environment:
            raise WrongEnvironment(
                f"the client token reads the Unleash environment {printable(served)!r}, not {environment!r}: this"
                " database would follow another environment's flag; nothing changed (token_env)"
            )
    features = document.get("features")
    if not isinstance(features, list):
        raise where.at("features").wrong("a list")
    found = None
    for index, feature in enumerate(features):
        at = where.at(f"features[{index}]")
        if not isinstance(feature, dict):
            raise at.wrong("an object")
        name = feature.get("name")
        if not isinstance(name, str):
            raise at.at("name").wrong("a string")
        if name == flag:
            if found is not None:
                raise at.wrong(f"the only entry named {flag}")
            found = (at, feature)
    if found is None:
        return None
    return _map_feature(found[0], found[1], flag)


def _map_feature(where: Where, feature: dict[str, Any], flag: str) -> UnleashFlag:
    enabled = feature.get("enabled")
    if not isinstance(enabled, bool):
        raise where.at("enabled").wrong("true or false")
    strategies = feature.get("strategies")
    if not isinstance(strategies, list):
        # Missing is not "no strategy" (which means everyone): an answer without them is not trusted.
        raise where.at("strategies").wrong("a list")
    project = feature.get("project")
    problems: list[str] = []
    problems += _variant_problems(where.at("variants"), feature.get("variants"), "the flag")
    dependencies = feature.get("dependencies")
    if dependencies is not None:
        if not isinstance(dependencies, list):
            raise where.at("dependencies").wrong("a list")
        if dependencies:
            problems.append("it depends on other flags: the database flag depends on none")
    # Switched on without an (active) strategy, the SDKs say on for everyone; switched off without one there is no
    # gate to keep (Unleash adds a 100 % rollout when it is switched on so).
    gates = Gates(everyone=enabled and not any(_active(s) for s in strategies))
    for index, strategy in enumerate(strategies):
        at = where.at(f"strategies[{index}]")
        if not isinstance(strategy, dict):
            raise at.wrong("an object")
        mapped = _map_strategy(at, strategy, flag, index + 1)
        if isinstance(mapped, str):
            problems.append(mapped)
        elif mapped is not None:
            gates = _union(gates, mapped)
    if len(gates.actors) > MAX_ACTORS:
        problems.append(f"{len(gates.actors):,} user ids in lists: more than the {MAX_ACTORS:,} the bridge applies")
    return UnleashFlag(
        name=flag,
        project=project if isinstance(project, str) else None,
        enabled=enabled,
        gates=None if problems else gates,
        problems=tuple(problems),
    )


def _active(strategy: Any) -> bool:
    """A strategy the SDKs evaluate: Unleash can keep a strategy but mark it disabled."""
    return not (isinstance(strategy, dict) and strategy.get("disabled") is True)


def _union(left: Gates, right: Gates) -> Gates:
    return Gates(
        everyone=left.everyone or right.everyone,
        percentage=max(left.percentage, right.percentage),
        actors=left.actors | right.actors,
    )


def _map_strategy(where: Where, strategy: dict[str, Any], flag: str, number: int) -> Gates | str | None:
    """The gates one strategy adds, None when it adds nothing, or the reason it cannot be represented."""
    name = strategy.get("name")
    if not isinstance(name, str):
        raise where.at("name").wrong("a string")
    label = f"strategy {number} ({printable(name)[:60]})"
    parameters = _absent_is(strategy.get("parameters"), {})
    if not isinstance(parameters, dict):
        raise where.at("parameters").wrong("an object")
    constraints = _absent_is(strategy.get("constraints"), [])
    if not isinstance(constraints, list):
        raise where.at("constraints").wrong("a list")
    segments = _absent_is(strategy.get("segments"), [])
    if not isinstance(segments, list):
        raise where.at("segments").wrong("a list")
    disabled = strategy.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise where.at("disabled").wrong("true or false")
    if disabled:
        return None  # kept in Unleash, evaluated by no SDK
    if name == "flexibleRollout":
        rollout = _rollout(where.at("parameters.rollout"), parameters.get("rollout"))
        if isinstance(rollout, str):
            return f"{label}: {rollout}"
        if rollout == 0:
            return None  # matches no one, whatever its constraints, segments or variants say
    elif name not in ("default", "userWithId"):
        return f"{label}: a strategy of another kind than default, flexibleRollout or userWithId"
    else:
        rollout = 100
    problems = _variant_problems(where.at("variants"), strategy.get("variants"), label)
    if segments:
        problems.append(f"{label}: it uses segments")
    if problems:
        return "; ".join(problems)
    ids = _user_id_list(where, constraints, label)
    if isinstance(ids, str):
        return ids
    if name == "userWithId":
        if ids is not None:
            return f"{label}: constraints on a list of user ids"
        listed = _user_ids(where.at("parameters.userIds"), parameters.get("userIds"), label)
        return listed if isinstance(listed, str) else Gates(actors=listed)
    stickiness = parameters.get("stickiness") or "default"
    if not isinstance(stickiness, str):
        raise where.at("parameters.stickiness").wrong("a string")
    if name == "flexibleRollout" and rollout == 100 and stickiness not in _EVERYONE_STICKINESS:
        return f"{label}: stickiness {printable(stickiness)[:60]!r}: it is on only for users with that field"
    if ids is not None:
        if rollout != 100:
            return f"{label}: a percentage of a list of user ids (only a 100 % rollout of a list is a list)"
        return Gates(actors=ids)
    if rollout == 100:
        return Gates(everyone=True)
    if stickiness not in _PERCENT_STICKINESS:
        return f"{label}: stickiness {printable(stickiness)[:60]!r}: the database buckets by customer id (userId)"
    group = parameters.get("groupId") or flag  # the SDKs' default
    if not isinstance(group, str):
        raise where.at("parameters.groupId").wrong("a string")
    if group != flag:
        return f"{label}: groupId {printable(group)[:60]!r} is not the flag's name: its buckets are not the database's"
    return Gates(percentage=rollout)


def _absent_is(value: Any, default: Any) -> Any:
    """An absent (or null) field as its empty value; anything else as it is, to be checked."""
    return default if value is None else value


def _rollout(where: Where, value: Any) -> int | str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise where.wrong("a whole number from 0 to 100")
    if not _ROLLOUT.fullmatch(text):
        return f"rollout {printable(text)[:20]!r} is not a whole number from 0 to 100"
    return int(text)


def _user_id_list(where: Where, constraints: list[Any], label: str) -> frozenset[int] | str | None:
    """The ids of a single `userId IN [...]` constraint; None without constraints; the reason for anything else."""
    if not constraints:
        return None
    for index, constraint in enumerate(constraints):
        if not isinstance(constraint, dict):
            raise where.at(f"constraints[{index}]").wrong("an object")
    if len(constraints) > 1:
        return f"{label}: {len(constraints)} constraints (only one `userId IN` list is representable)"
    constraint = constraints[0]
    at = where.at("constraints[0]")
    context = constraint.get("contextName")
    operator = constraint.get("operator")
    if context != "userId" or operator != "IN" or constraint.get("inverted") is True:
        shown = f"{printable(context)[:40]} {'NOT ' if constraint.get('inverted') is True else ''}{printable(operator)}"
        return f"{label}: a constraint {shown} (only `userId IN` a list is representable)"
    values = constraint.get("values")
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise at.at("values").wrong("a list of strings")
    return _customer_ids(values, label)


def _user_ids(where: Where, value: Any, label: str) -> frozenset[int] | str:
    if not isinstance(value, str):
        raise where.wrong("a string of comma-separated ids")
    # As the SDKs split it: on commas, blanks around each id ignored, empty entries matching no one.
    return _customer_ids([part.strip() for part in value.split(",") if part.strip()], label)


def _customer_ids(values: Iterable[str], label: str) -> frozenset[int] | str:
    ids = set()
    for value in values:
        if not _CUSTOMER_ID.fullmatch(value) or int(value) > _MAX_CUSTOMER_ID:
            return f"{label}: user id {printable(value)[:40]!r} is not a customer id as the application sends it"
        ids.add(int(value))
    return frozenset(ids)


def _variant_problems(where: Where, variants: Any, label: str) -> list[str]:
    """Variants matter when they can tell users apart (two or more, a payload, overrides): the database flag is on
    or off, nothing more. One bare variant only names the on state."""
    if variants is None:
        return []
    if not isinstance(variants, list):
        raise where.wrong("a list")
    for index, variant in enumerate(variants):
        if not isinstance(variant, dict):
            raise where.at(f"[{index}]").wrong("an object")
    if len(variants) > 1:
        return [f"{label}: {len(variants)} variants (the database flag has none)"]
    if variants and (variants[0].get("payload") is not None or variants[0].get("overrides")):
        return [f"{label}: a variant with a payload or overrides (the database flag has none)"]
    return []


@dataclass(frozen=True)
class Where:
    """A path in the answer, for shape errors: `features[0].strategies[1].parameters.rollout`."""

    path: str

    def at(self, part: str) -> Where:
        if self.path == "the answer":
            return Where(part)
        return Where(f"{self.path}{'' if part.startswith('[') else '.'}{part}")

    def wrong(self, expected: str) -> UnleashUnreadable:
        return UnleashUnreadable(
            f"Unleash answered something that is not its client API's feature list: {self.path} must be {expected}"
        )
