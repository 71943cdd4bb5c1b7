"""Both engines reach the same decision on every input the gateway can send.

OPA (Go) and regorus (Rust) differ where Unicode meets the builtins (`lower` of a dotted
capital I) and where a number is not the type a rule expects (`format_int` of 6.5). The
gateway therefore sends only a strict input (codes in ASCII, counts as integers; see
gateway/policy/contract.py), and PolicyService refuses any other before an engine sees it.
These tests hold both halves: the property test generates inputs of every shape the gateway
sends and requires the same decision, reason codes and obligations from the embedded engine
and a real OPA; the others show a non-strict input refused alike by both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_support import POLICY_DIR, an_identification, open_test_engine, service_for

from gateway.auth.principals import Role
from gateway.case import LegalBasis
from gateway.operations import OperationKind
from gateway.policy.bundle import load_bundle
from gateway.policy.contract import Decision, PolicyInput, WarrantStatus
from gateway.policy.engine import POLICY_INPUT_INVALID, PolicyService

CONFIG = load_bundle(POLICY_DIR).config


@pytest.fixture(scope="module")
async def both_engines() -> AsyncIterator[tuple[PolicyService, PolicyService]]:
    bundle = load_bundle(POLICY_DIR)
    embedded = service_for(await open_test_engine("embedded", bundle), POLICY_DIR)
    opa = service_for(await open_test_engine("opa", bundle), POLICY_DIR)
    yield embedded, opa
    await embedded.close()
    await opa.close()


def outcome(decision: Decision) -> tuple[bool, list[str], dict[str, Any]]:
    """What must agree: allow, the reason codes (messages may be worded alike or not), and
    the obligations."""
    return (
        decision.allow,
        sorted(reason.code for reason in decision.reasons),
        decision.obligations.model_dump(),
    )


async def decide_on_both(
    engines: tuple[PolicyService, PolicyService], policy_input: PolicyInput
) -> tuple[Decision, Decision]:
    embedded, opa = engines
    return await embedded.decide(policy_input), await opa.decide(policy_input)


async def test_a_dotted_capital_i_in_the_offense_is_refused_alike(
    both_engines: tuple[PolicyService, PolicyService],
) -> None:
    # Go lowers "İ" to "i", Rust to "i̇": OPA allowed this identification, regorus refused.
    embedded, opa = await decide_on_both(both_engines, an_identification(offense="KİDNAPPİNG"))
    assert outcome(embedded) == outcome(opa)
    assert [r.code for r in embedded.reasons] == [POLICY_INPUT_INVALID]
    assert "context.offense" in embedded.reasons[0].message


# (True is not here: the serializer sends a bool in an int field as 1, a count.)
@pytest.mark.parametrize("count", [6.5, 6.0, "6", -1, 2**64, None, [6]])
async def test_an_activity_count_that_is_not_an_integer_is_refused_alike(
    both_engines: tuple[PolicyService, PolicyService], count: object
) -> None:
    # The pipeline sets the counts with model_copy, which validates nothing: the service
    # checks what the engines would be sent.
    policy_input = an_identification().model_copy(
        update={"activity": {"officer": {"requests": {"second": count}}}}
    )
    embedded, opa = await decide_on_both(both_engines, policy_input)
    assert outcome(embedded) == outcome(opa)
    assert [r.code for r in embedded.reasons] == [POLICY_INPUT_INVALID]
    assert "activity.officer.requests.second" in embedded.reasons[0].message


# --- inputs of the shapes the gateway sends -------------------------------------------------
#
# Each field is mostly what a lawful identification would carry and sometimes anything of its
# syntax, so the examples reach allowed decisions (obligations, flags) as well as every refusal.

T = TypeVar("T")


def mostly(usual: st.SearchStrategy[T], other: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`usual` three times in four, `other` otherwise."""
    return st.integers(0, 3).flatmap(lambda n: other if n == 0 else usual)


codes = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,15}", fullmatch=True)
# Case numbers and warrant ids: printable ASCII, no space at either end.
identifiers = st.from_regex(r"[!-~]([ -~]{0,14}[!-~])?", fullmatch=True)
CASE = "2025-000123"


def listed(*lists: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted({item for items in lists for item in items}))


def maybe(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


purposes = mostly(listed(CONFIG["purposes"]), maybe(codes))
offenses = mostly(
    listed(CONFIG["identification"]["serious_offenses"]), maybe(listed(CONFIG["offenses"]) | codes)
)
legal_bases = mostly(
    st.sampled_from(["warrant", "court_order", "exigent"]),
    maybe(st.sampled_from([basis.value for basis in LegalBasis])),
)
case_numbers = mostly(st.just(CASE), maybe(st.just("2024-009999") | identifiers))
collections = mostly(st.just("mugshots"), maybe(st.sampled_from(["staff", "missing-persons"])))
attributes = mostly(
    st.just([]),
    st.lists(
        listed(
            CONFIG["attributes"]["forbidden"],
            CONFIG["attributes"]["removed_from_responses"],
            ["default", "smile", "headpose", "landmarks"],
        )
        | codes,
        max_size=4,
        unique=True,
    ).map(sorted),
)
kinds = st.sampled_from([kind.value for kind in OperationKind])
counts = mostly(st.integers(0, 4), st.integers(0, 60))


def timestamps(start: int, end: int) -> st.SearchStrategy[str]:
    """RFC 3339 in UTC, as the gateway writes `now` (with microseconds) or a date."""
    return st.builds(
        lambda day, seconds, micros: (
            f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
            f"{seconds % 60:02d}{f'.{micros:06d}' if micros else ''}Z"
        ),
        st.dates(min_value=date(start, 1, 1), max_value=date(end, 12, 31)),
        st.integers(0, 86399),
        st.integers(0, 999_999) | st.just(0),
    )


def _zone_points() -> list[tuple[float, float]]:
    points = []
    for feature in CONFIG["zones"]["features"]:
        geometry = feature["geometry"]
        polygons = (
            [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        )
        for polygon in polygons:
            for ring in polygon:
                points.extend((lon, lat) for lon, lat in ring)
    return points


# Near the configured zones (inside, outside, on an edge or a vertex), and anywhere.
OFFSETS = st.sampled_from([0.0, 0.0005, -0.0005, 0.001, -0.001]) | st.floats(-0.002, 0.002)
locations = st.one_of(
    st.builds(
        lambda vertex, dlon, dlat: {"lat": vertex[1] + dlat, "lon": vertex[0] + dlon},
        st.sampled_from(_zone_points()),
        OFFSETS,
        OFFSETS,
    ),
    st.builds(lambda lat, lon: {"lat": lat, "lon": lon}, st.floats(-90, 90), st.floats(-180, 180)),
)

WINDOWS = ["second", "ten_seconds", "minute", "hour", "day"]
STREAMS = ["requests", "probes", "identifications", "enrolments", "distinct_cases"]
activity = st.dictionaries(
    st.sampled_from(["officer", "agency", "case", "probe"]),
    st.dictionaries(st.sampled_from(STREAMS), st.dictionaries(st.sampled_from(WINDOWS), counts)),
)

warrants = mostly(
    st.fixed_dictionaries(
        {
            "status": st.just("active"),
            "id": st.just("W-1"),
            "kind": st.sampled_from(["warrant", "court_order"]),
            "case_number": st.just(CASE),
            "operations": st.just(["identify"]) | st.lists(kinds, max_size=3, unique=True),
            "collections": st.just(["mugshots"]),
            "realtime": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {"status": st.sampled_from([status.value for status in WarrantStatus])},
        optional={
            "id": identifiers,
            "kind": st.sampled_from(["warrant", "court_order"]),
            "case_number": case_numbers,
            "operations": st.lists(kinds, max_size=3, unique=True),
            "collections": st.lists(
                st.sampled_from(["mugshots", "staff"]), max_size=2, unique=True
            ),
            "realtime": st.booleans(),
        },
    ),
)

ATTESTATION = "demographic_accuracy_test"
vendors = mostly(
    st.fixed_dictionaries(
        {
            "name": st.just("rekognition-main"),
            "protocol": st.just("rekognition"),
            "attestations": st.fixed_dictionaries(
                {
                    ATTESTATION: st.fixed_dictionaries(
                        {
                            "date": timestamps(2024, 2026).map(lambda t: t[:10] + "T00:00:00Z"),
                            "source": st.just("NIST FRTE 1:N"),
                        }
                    )
                }
            ),
        }
    ),
    st.none()
    | st.fixed_dictionaries(
        {
            "name": st.sampled_from(["rekognition-main", "azure-eu"]),
            "protocol": st.sampled_from(["rekognition", "azure", "compreface"]),
            "attestations": st.dictionaries(
                st.sampled_from([ATTESTATION, "other_test"]),
                st.fixed_dictionaries(
                    {
                        "date": timestamps(2018, 2027).map(lambda t: t[:10] + "T00:00:00Z"),
                        "source": st.sampled_from(["NIST FRTE 1:N", "in-house"]),
                    }
                ),
                max_size=2,
            ),
        }
    ),
)

WINDOWS_OF_ZONES = ["2025-03-01T12:00:00Z", "2026-05-01T15:30:00Z"]  # inside a zone's window
nows = mostly(timestamps(2025, 2026), st.sampled_from(WINDOWS_OF_ZONES) | timestamps(2024, 2027))

principals = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["officer-7", "admin-1"]),
        "name": st.just("O. Seven"),
        "agency": st.sampled_from(["dpd", "Metro PD"]),
        "roles": mostly(
            st.just(["officer"]),
            st.lists(st.sampled_from([role.value for role in Role]), min_size=1, max_size=2),
        ),
    }
)

operations = st.fixed_dictionaries(
    {
        "vendor": st.sampled_from(["rekognition", "azure", "compreface"]),
        "name": st.sampled_from(["SearchFacesByImage", "DetectFaces", "IndexFaces", "Identify"]),
        "kind": mostly(st.just("identify"), kinds),
        "collection": collections,
        "threshold": st.none() | st.floats(0, 100),
        "max_results": st.none() | st.integers(1, 100),
        "attributes": attributes,
        "probe_digests": st.lists(
            st.sampled_from(["sha256:" + "a" * 64, "sha256:" + "b" * 64]), max_size=2
        ),
        "faces_in_probe": mostly(st.integers(0, 3), st.none() | st.integers(0, 20)),
    }
)

contexts = st.fixed_dictionaries(
    {
        "purpose": purposes,
        "case_number": case_numbers,
        "offense": offenses,
        "legal_basis": legal_bases,
        "warrant_id": mostly(st.just("W-1"), maybe(identifiers)),
        "warrant": warrants,
        "conflicts": mostly(
            st.just([]),
            st.lists(
                st.sampled_from(["purpose", "case_number", "offense", "legal_basis", "warrant_id"]),
                max_size=2,
                unique=True,
            ),
        ),
        "locations": mostly(st.just([]), st.lists(locations, max_size=2)),
    }
).map(lambda c: {**c, "location": c["locations"][0] if c["locations"] else None})

policy_inputs = st.builds(
    lambda principal, operation, context, vendor, activity, now: PolicyInput.model_validate(
        {
            "principal": principal,
            "operation": operation,
            "context": context,
            "vendor": vendor,
            "activity": activity,
            "now": now,
        }
    ),
    principals,
    operations,
    contexts,
    vendors,
    activity,
    nows,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy_input=policy_inputs)
async def test_both_engines_reach_the_same_decision_on_what_the_gateway_sends(
    both_engines: tuple[PolicyService, PolicyService], policy_input: PolicyInput
) -> None:
    embedded, opa = await decide_on_both(both_engines, policy_input)
    # A strict input is decided by the policy itself, not refused before it or by an error.
    assert not {r.code for r in embedded.reasons} & {
        POLICY_INPUT_INVALID,
        "policy_error",
        "policy_timeout",
        "policy_undefined",
    }, embedded.reasons
    assert outcome(embedded) == outcome(opa), policy_input.model_dump_json()
