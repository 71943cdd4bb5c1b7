"""Both engines reach the same decision on every review or action the gateway can send,
and refuse alike a lead input that is not strict (its paths are in STRICT_FIELDS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_support import POLICY_DIR, open_test_engine, service_for
from test_engine_agreement import codes, mostly, outcome, timestamps

from gateway.policy.bundle import load_bundle
from gateway.policy.engine import POLICY_INPUT_INVALID, PolicyService
from gateway.policy.lead_input import LeadPolicyInput

CONFIG = load_bundle(POLICY_DIR).config
STATUSES = ["pending", "awaiting_authorisation", "verified", "rejected", "void"]
VERDICTS = ["confirmed", "rejected", "inconclusive"]
PEOPLE = ["officer-7", "examiner-1", "examiner-2", "examiner-3"]


@pytest.fixture(scope="module")
async def both_engines() -> AsyncIterator[tuple[PolicyService, PolicyService]]:
    bundle = load_bundle(POLICY_DIR)
    embedded = service_for(await open_test_engine("embedded", bundle), POLICY_DIR)
    opa = service_for(await open_test_engine("opa", bundle), POLICY_DIR)
    yield embedded, opa
    await embedded.close()
    await opa.close()


days = st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)).map(date.isoformat)
reviews = st.lists(
    st.fixed_dictionaries(
        {"reviewer": st.sampled_from(PEOPLE), "verdict": st.sampled_from(VERDICTS)}
    ),
    max_size=3,
)
authorisations = st.none() | st.fixed_dictionaries(
    {
        "state": st.sampled_from(["pending", "granted", "refused"]),
        "basis": st.just("exigent"),
        "deadline": timestamps(2025, 2026),
    }
)
lead_inputs = st.builds(
    lambda kind, who, roles, agency, trained, verdict, action, lead, now: (
        LeadPolicyInput.model_validate(
            {
                "kind": kind,
                "principal": {"id": who, "name": who, "agency": agency, "roles": roles},
                "trained_until": trained,
                "verdict": verdict if kind == "lead_review" else None,
                "action": action if kind == "lead_action" else None,
                "lead": lead,
                "now": now,
            }
        )
    ),
    st.sampled_from(["lead_review", "lead_action"]),
    st.sampled_from(PEOPLE),
    st.lists(st.sampled_from(["officer", "reviewer", "auditor"]), min_size=1, unique=True),
    mostly(st.just("dpd"), st.just("spd")),
    st.none() | days,
    mostly(st.sampled_from(VERDICTS), codes),
    mostly(st.sampled_from(CONFIG["leads"]["actions"]["kinds"]), codes),
    st.fixed_dictionaries(
        {
            "id": st.just("lead-1"),
            "agency": st.just("dpd"),
            "officer": st.sampled_from(PEOPLE),
            "vendor": st.just("rekognition"),
            "similarity": st.floats(0, 100),
            "status": st.sampled_from(STATUSES),
            "reviews": reviews,
            "authorisation": authorisations,
        }
    ),
    timestamps(2025, 2026),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy_input=lead_inputs)
async def test_both_engines_decide_every_review_and_action_alike(
    both_engines: tuple[PolicyService, PolicyService], policy_input: LeadPolicyInput
) -> None:
    embedded, opa = both_engines
    mine, theirs = await embedded.decide(policy_input), await opa.decide(policy_input)
    assert not {r.code for r in mine.reasons} & {
        POLICY_INPUT_INVALID,
        "policy_error",
        "policy_undefined",
    }, mine.reasons
    assert outcome(mine) == outcome(theirs), policy_input.model_dump_json()


BASE: dict[str, Any] = {
    "kind": "lead_review",
    "principal": {"id": "examiner-1", "name": "E", "agency": "dpd", "roles": ["reviewer"]},
    "trained_until": "2025-12-31",
    "verdict": "confirmed",
    "lead": {
        "id": "lead-1",
        "agency": "dpd",
        "officer": "officer-7",
        "vendor": "rekognition",
        "similarity": 99.0,
        "status": "pending",
    },
    "now": "2025-03-01T12:00:00Z",
}


@pytest.mark.parametrize(
    "change",
    [
        {"trained_until": "2025-02-30"},
        {"trained_until": "31/12/2025"},
        {"verdict": "CONFİRMED"},
        {"lead": {**BASE["lead"], "status": "Verified "}},
        {"lead": {**BASE["lead"], "authorisation": {"state": "pending", "basis": "exigent",
                                                     "deadline": "2025-03-02T12:00:00+01:00"}}},
    ],
)  # fmt: skip
async def test_a_lead_input_that_is_not_strict_is_refused_alike(
    both_engines: tuple[PolicyService, PolicyService], change: dict[str, Any]
) -> None:
    policy_input = LeadPolicyInput.model_validate(BASE | change)
    for engine in both_engines:
        decision = await engine.decide(policy_input)
        assert [r.code for r in decision.reasons] == [POLICY_INPUT_INVALID]
