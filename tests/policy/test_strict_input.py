"""contract.strict_input_problems: the gate before either engine.

Its yes-or-no walk is built for speed (closures built once per path);
the walk that names the problems (_values_at) is the plain statement of STRICT_FIELDS.
These tests hold the fast one to the plain one on every shape of activity, and pin the
problems text a refusal carries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from policy_support import an_identification

from gateway.policy.contract import STRICT_FIELDS, _values_at, strict_input_problems


def accepted_by_the_plain_walk(document: Mapping[str, Any]) -> bool:
    """STRICT_FIELDS read literally: every value at every path is of its syntax."""
    for path, syntax in STRICT_FIELDS:
        for _, value in _values_at(document, path.split("."), ""):
            if not syntax.accepts(value):  # _NOT_A_CONTAINER is accepted by no syntax
                return False
    return True


def a_document(**changes: Any) -> dict[str, Any]:
    return an_identification().model_dump(mode="json", warnings=False) | changes


# Counts and what a model_copy could slip in their place.
odd_values = st.sampled_from(
    [None, True, False, 6.0, 6.5, -1, 2**53 - 1, 2**53, 2**64, "6", [6], {}, {"n": 6}]
)
counts = st.integers(0, 60) | odd_values


def levels(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A level of nesting as the activity has it (a dict), or another shape."""
    keys = st.sampled_from(["officer", "case", "requests", "minute", "day"])
    return (
        st.dictionaries(keys, leaf, max_size=4)
        | st.dictionaries(keys, leaf, max_size=2).map(MappingProxyType)
        | st.lists(leaf, max_size=2)
        | odd_values
    )


activities = levels(levels(levels(counts)))


@settings(max_examples=500, deadline=None)
@given(activity=activities | st.dictionaries(st.just("officer"), st.dictionaries(
    st.just("requests"), st.dictionaries(st.sampled_from(["second", "minute", "hour"]), counts,
                                         min_size=1))))  # fmt: skip
def test_the_fast_walk_accepts_exactly_what_strict_fields_accept(activity: Any) -> None:
    document = a_document(activity=activity)
    assert (strict_input_problems(document) == []) == accepted_by_the_plain_walk(document)


def test_the_activity_of_a_real_input_passes() -> None:
    windows = {w: 7 for w in ["second", "ten_seconds", "minute", "hour", "day"]}
    activity = {
        scope: {stream: dict(windows) for stream in ["requests", "probes", "identifications"]}
        for scope in ["officer", "agency", "case", "probe"]
    }
    assert strict_input_problems(a_document(activity=activity)) == []


def test_each_refusal_names_the_path_and_the_syntax() -> None:
    document = a_document(
        now="2025-02-30T12:00:00Z",
        activity={
            "officer": {"requests": {"second": 6.0, "minute": 2**53, "hour": True, "day": 3}},
            "case": {"probes": None, "requests": [1, "2"]},
            "agency": 5,
        },
    )
    document["operation"] = document["operation"] | {"threshold": float("inf")}
    document["context"] = document["context"] | {"offense": "KİDNAPPİNG", "conflicts": "x"}
    assert strict_input_problems(document) == [
        "now: must be an RFC 3339 time in UTC (YYYY-MM-DDThh:mm:ss[.ffffff]Z),"
        " not '2025-02-30T12:00:00Z'",
        "context.offense: must be a code of ASCII letters, digits, '_' and '-' (at most 64,"
        " starting with a letter or digit), in lower case, not 'KİDNAPPİNG'",
        "context.conflicts: must be an object or a list",
        "operation.threshold: must be a finite number, not inf",
        "activity.officer.requests.second: must be a non-negative integer, not 6.0",
        "activity.officer.requests.minute: must be a non-negative integer, not 9007199254740992",
        "activity.officer.requests.hour: must be a non-negative integer, not True",
        "activity.case.requests.1: must be a non-negative integer, not '2'",
        "activity.agency: must be an object or a list",
    ]


def test_a_mapping_that_is_not_a_dict_is_walked_alike() -> None:
    class Counts(Mapping[str, Any]):
        def __init__(self, values: dict[str, Any]) -> None:
            self._values = values

        def __getitem__(self, key: str) -> Any:
            return self._values[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._values)

        def __len__(self) -> int:
            return len(self._values)

    good = {"officer": {"requests": Counts({"second": 1})}}
    bad = {"officer": {"requests": Counts({"second": 1.5})}}
    assert strict_input_problems(a_document(activity=good)) == []
    assert strict_input_problems(a_document(activity=bad)) == [
        "activity.officer.requests.second: must be a non-negative integer, not 1.5"
    ]


def test_a_list_in_place_of_a_level_is_walked_alike() -> None:
    # The one loop over the counts reads dicts only; a list at any level goes to the
    # general walk, which reads its items.
    for activity, where in [
        ({"officer": {"requests": [1, 1.5]}}, "activity.officer.requests.1"),
        ({"officer": [{"second": -1}]}, "activity.officer.0.second"),
        ([{"requests": {"second": "6"}}], "activity.0.requests.second"),
    ]:
        [problem] = strict_input_problems(a_document(activity=activity))
        assert problem.startswith(f"{where}: must be a non-negative integer")
    assert strict_input_problems(a_document(activity={"officer": {"requests": [1, 2]}})) == []
