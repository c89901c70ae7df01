"""The mapping of an Unleash flag to the database flag (sync_admin/unleash_mapping.py): exact or refused.

Documents shaped as Unleash's client API answers them; the Unleash client-specification vectors that apply to
numeric user ids (tests/unleash/client-specification-vectors.json, with their source) evaluated by the database's
own billing_sync.flag_enabled_for. The same mapping against a live server: tests/test_unleash_bridge.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync_admin.unleash_client import UnleashUnreadable, parse_json
from sync_admin.unleash_mapping import Gates, WrongEnvironment, read_flag

FLAG = "account_data_persistence"
VECTORS = Path(__file__).parent / "unleash" / "client-specification-vectors.json"


def served(*strategies: dict, enabled: bool = True, **fields: object) -> dict:
    feature = {"name": FLAG, "enabled": enabled, "strategies": list(strategies), "project": "default", **fields}
    return {"version": 2, "features": [{"name": "other", "enabled": True, "strategies": []}, feature]}


def rollout(
    percentage: object, stickiness: str = "default", group: str = FLAG, constraints: list | None = None
) -> dict:
    return {
        "name": "flexibleRollout",
        "constraints": constraints or [],
        "parameters": {"rollout": percentage, "stickiness": stickiness, "groupId": group},
    }


def user_in(*values: str, inverted: bool = False, operator: str = "IN", context: str = "userId") -> dict:
    return {"contextName": context, "operator": operator, "values": list(values), "inverted": inverted}


REPRESENTABLE = {
    "no strategy: everyone (switched on)": ([], Gates(everyone=True)),
    "default": ([{"name": "default"}], Gates(everyone=True)),
    "100 % rollout": ([rollout("100")], Gates(everyone=True)),
    "100 % random": ([rollout("100", stickiness="random")], Gates(everyone=True)),
    "100 % of another group is everyone all the same": ([rollout("100", group="x")], Gates(everyone=True)),
    "25 %, default stickiness": ([rollout("25")], Gates(percentage=25)),
    "25 %, userId stickiness, number": ([rollout(25, stickiness="userId")], Gates(percentage=25)),
    "groupId left empty: the flag's name": ([rollout("10", group="")], Gates(percentage=10)),
    "two percentages: the larger": ([rollout("10"), rollout("30")], Gates(percentage=30)),
    "0 % matches no one, whatever it says": (
        [rollout("0", stickiness="sessionId", group="x", constraints=[user_in("a", context="email")])],
        Gates(),
    ),
    "userId IN at 100 %": ([rollout("100", constraints=[user_in("101", "102")])], Gates(actors=frozenset({101, 102}))),
    "userWithId": ([{"name": "userWithId", "parameters": {"userIds": "7, 8,,9 "}}], Gates(actors=frozenset({7, 8, 9}))),
    "default with userId IN": (
        [{"name": "default", "constraints": [user_in("5")]}],
        Gates(actors=frozenset({5})),
    ),
    "percentage and actors": (
        [
            rollout("50"),
            rollout("100", constraints=[user_in("3")]),
            {"name": "userWithId", "parameters": {"userIds": "4"}},
        ],
        Gates(percentage=50, actors=frozenset({3, 4})),
    ),
    "a disabled strategy is not evaluated": (
        [rollout("20"), {**rollout("90", group="other"), "disabled": True}],
        Gates(percentage=20),
    ),
    "only disabled strategies: as no strategy": ([{**rollout("10"), "disabled": True}], Gates(everyone=True)),
    "one bare variant only names the on state": (
        [{**rollout("40"), "variants": [{"name": "on", "weight": 1000, "stickiness": "default"}]}],
        Gates(percentage=40),
    ),
}


@pytest.mark.parametrize("name", REPRESENTABLE)
def test_representable_strategies_map_exactly(name):
    strategies, gates = REPRESENTABLE[name]
    for enabled in (True, False):  # switched off, the gates are kept, as the database's kill switch keeps them
        flag = read_flag(served(*strategies, enabled=enabled), FLAG, "production")
        assert flag is not None and flag.problems == ()
        if "no strategy" in name:
            gates = Gates(everyone=enabled)  # off without a strategy: no gate to keep
        assert (flag.enabled, flag.gates) == (enabled, gates)


REFUSED = {
    "remoteAddress": ([{"name": "remoteAddress", "parameters": {"IPs": "10.0.0.1"}}], "another kind"),
    "gradualRolloutUserId": ([{"name": "gradualRolloutUserId", "parameters": {"percentage": "5"}}], "another kind"),
    "another groupId": ([rollout("25", group="checkout")], "groupId 'checkout' is not the flag's name"),
    "sessionId stickiness": ([rollout("25", stickiness="sessionId")], "stickiness 'sessionId'"),
    "random at 25 %": ([rollout("25", stickiness="random")], "stickiness 'random'"),
    "custom stickiness at 100 %": ([rollout("100", stickiness="tenantId")], "on only for users with that field"),
    "email constraint": ([rollout("100", constraints=[user_in("a@b", context="email")])], "a constraint email IN"),
    "NOT IN": ([rollout("100", constraints=[user_in("1", inverted=True)])], "a constraint userId NOT IN"),
    "STR_CONTAINS": ([rollout("100", constraints=[user_in("1", operator="STR_CONTAINS")])], "userId STR_CONTAINS"),
    "two constraints": ([rollout("100", constraints=[user_in("1"), user_in("2")])], "2 constraints"),
    "a percentage of a list": ([rollout("50", constraints=[user_in("1")])], "a percentage of a list"),
    "segments": ([{**rollout("25"), "segments": [1]}], "it uses segments"),
    "not a customer id": ([rollout("100", constraints=[user_in("042")])], "'042' is not a customer id"),
    "an email in userWithId": ([{"name": "userWithId", "parameters": {"userIds": "1,bob@x"}}], "'bob@x'"),
    "a fraction": ([rollout("12.5")], "'12.5' is not a whole number"),
    "over 100": ([rollout("101")], "'101' is not a whole number"),
    "strategy variants": (
        [{**rollout("50"), "variants": [{"name": "a", "weight": 500}, {"name": "b", "weight": 500}]}],
        "2 variants",
    ),
    "a variant with a payload": (
        [{**rollout("50"), "variants": [{"name": "a", "weight": 1000, "payload": {"type": "string", "value": "x"}}]}],
        "a payload",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_the_database_cannot_represent_is_refused_with_the_reason(name):
    strategies, reason = REFUSED[name]
    flag = read_flag(served(rollout("10"), *strategies), FLAG, "production")
    assert flag is not None and flag.gates is None
    assert any(reason in problem for problem in flag.problems), flag.problems


def test_flag_level_variants_and_dependencies_are_refused():
    variants = [{"name": "a", "weight": 500}, {"name": "b", "weight": 500}]
    flag = read_flag(served(rollout("10"), variants=variants), FLAG, "production")
    assert flag.gates is None and "the flag: 2 variants" in flag.problems[0]
    flag = read_flag(served(rollout("10"), dependencies=[{"feature": "parent"}]), FLAG, "production")
    assert flag.gates is None and "depends on other flags" in flag.problems[0]


def test_a_flag_not_served_is_none_and_another_environment_is_refused():
    assert read_flag({"version": 2, "features": []}, FLAG, "production") is None
    document = {**served(rollout("10")), "query": {"environment": "development"}}
    with pytest.raises(WrongEnvironment, match="reads the Unleash environment 'development', not 'production'"):
        read_flag(document, FLAG, "production")


SHAPES = {
    "not an object": ([], "the answer must be an object"),
    "no features": ({"version": 2}, "features must be a list"),
    "a feature without a name": ({"features": [{"enabled": True}]}, "features[0].name must be a string"),
    "enabled as a string": (
        {"features": [{"name": FLAG, "enabled": "true", "strategies": []}]},
        "features[0].enabled must be true or false",
    ),
    "strategies missing (not: no strategy)": (
        {"features": [{"name": FLAG, "enabled": True}]},
        "features[0].strategies must be a list",
    ),
    "a strategy that is not an object": (
        {"features": [{"name": FLAG, "enabled": True, "strategies": ["default"]}]},
        "features[0].strategies[0] must be an object",
    ),
    "parameters as a list": (
        {"features": [{"name": FLAG, "enabled": True, "strategies": [{"name": "default", "parameters": []}]}]},
        "features[0].strategies[0].parameters must be an object",
    ),
    "rollout as a list": (
        {"features": [{"name": FLAG, "enabled": True, "strategies": [rollout(["25"])]}]},
        "features[0].strategies[0].parameters.rollout must be a whole number",
    ),
    "constraint values not strings": (
        {"features": [{"name": FLAG, "enabled": True, "strategies": [rollout("100", constraints=[user_in(1)])]}]},
        "constraints[0].values must be a list of strings",
    ),
    "the flag twice": (
        {"features": [served()["features"][1], served()["features"][1]]},
        "features[1] must be the only entry named",
    ),
}


@pytest.mark.parametrize("name", SHAPES)
def test_an_answer_of_another_shape_is_unreadable_never_guessed(name):
    document, message = SHAPES[name]
    with pytest.raises(UnleashUnreadable, match="not its client API's feature list") as raised:
        read_flag(document, FLAG, "production")
    assert message in str(raised.value)


def test_json_that_is_not_json_or_too_deep_is_unreadable():
    for raw in (b"<html>login</html>", b'{"a": NaN}', b"[" * 100_000 + b"]" * 100_000, b'{"a": 1', b"\xff\xfe"):
        with pytest.raises(UnleashUnreadable, match=r"not valid JSON|nested deeper"):
            parse_json(raw, "http://unleash")
    with pytest.raises(UnleashUnreadable, match="nested deeper than 32"):
        parse_json(b"[" * 40 + b"]" * 40, "http://unleash")


# --- the client specification ---------------------------------------------------------------------------------


def _vectors() -> list[tuple[str, dict, dict]]:
    document = json.loads(VECTORS.read_text())
    return [
        (entry["path"], feature, test)
        for entry in document["files"]
        for test in entry["tests"]
        for feature in entry["features"]
        if feature["name"] == test["toggleName"]
    ]


def test_the_vectors_file_names_its_source():
    source = json.loads(VECTORS.read_text())["source"]
    assert source["repository"].startswith("Unleash/client-specification") and len(source["commit"]) == 40
    assert len(_vectors()) == 22


def test_client_specification_vectors_for_numeric_user_ids_agree_with_the_database(conn):
    """Each vector's flag mapped by the bridge and set in the database; billing_sync.flag_enabled_for answers for
    the vector's user id. A flag the mapping refuses is not applied by the bridge: those vectors are only counted
    (never approximated), and every one of them must be refused for a reason, not for a shape error."""
    # The vectors' flag names (dots, capitals) are not names the database admits: this test's own database (a
    # throw-away clone) drops that format check, so that the real function evaluates them under their own names,
    # which are their buckets' groupIds.
    conn.execute("ALTER TABLE billing_sync.feature_flags DROP CONSTRAINT feature_flags_name_format")
    agreed, refused = [], []
    for path, feature, test in _vectors():
        flag = read_flag({"features": [feature]}, feature["name"], "production")
        assert flag is not None
        if flag.gates is None:
            assert flag.problems
            refused.append((path, test["description"]))
            continue
        name = feature["name"]
        conn.execute(
            "INSERT INTO billing_sync.feature_flags (name, enabled, everyone, percentage) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, everyone = excluded.everyone,"
            " percentage = excluded.percentage",
            (name, flag.enabled, flag.gates.everyone, flag.gates.percentage),
        )
        conn.execute("DELETE FROM billing_sync.feature_flag_actors WHERE flag_name = %s", (name,))
        for actor in flag.gates.actors:
            conn.execute(
                "INSERT INTO billing_sync.feature_flag_actors (flag_name, customer_id) VALUES (%s, %s)", (name, actor)
            )
        answer = conn.execute(
            "SELECT billing_sync.flag_enabled_for(%s, %s)", (name, int(test["context"]["userId"]))
        ).fetchone()[0]
        assert answer is test["expectedResult"], (path, test["description"])
        agreed.append((path, test["description"]))
    # 10 agree; 12 are refused: gradualRolloutUserId and gradualRolloutRandom (strategies of other kinds), and
    # constraints on other fields than userId.
    assert (len(agreed), len(refused)) == (10, 12), (agreed, refused)
    assert {path.split("/")[1][:2] for path, _ in refused} == {"03", "07", "09"}, refused
