"""Codes and identifiers in the case context: canonical where they enter, or refused."""

from __future__ import annotations

import pytest

from gateway.case import CaseContext, LegalBasis
from gateway.context.gather import merge_case_context
from gateway.errors import MalformedRequest

BOUND = CaseContext(purpose="criminal_investigation", case_number="2026-1", offense="homicide")


def test_codes_are_folded_to_their_canonical_form_and_blanks_are_missing() -> None:
    context = CaseContext.checked(
        purpose=" Missing_Person ", offense="HOMICIDE", legal_basis="Warrant", warrant_id="  "
    )
    assert (context.purpose, context.offense) == ("missing_person", "homicide")
    assert context.legal_basis is LegalBasis.WARRANT and context.warrant_id is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("offense", "KİDNAPPİNG", "offense must be a code of ASCII letters"),
        ("offense", "\u212aidnapping", "offense must be a code"),  # KELVIN SIGN lowers to k
        ("purpose", "crowd monitoring", "purpose must be a code"),
        ("legal_basis", "hunch", "legal_basis must be one of: warrant"),
        ("case_number", "2026\u00a0HOM", "case_number must be printable ASCII"),
        ("warrant_id", "W" * 101, "warrant_id must be printable ASCII"),
    ],
)
def test_a_value_outside_its_syntax_is_refused_naming_the_field(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(MalformedRequest, match=message):
        CaseContext.checked(**{field: value})


def test_a_header_is_compared_in_canonical_form() -> None:
    context, conflicts = merge_case_context(BOUND, {"x-facegate-offense": " Homicide"})
    assert conflicts == [] and context.offense == "homicide"


def test_a_header_outside_its_syntax_is_refused_naming_the_header() -> None:
    with pytest.raises(MalformedRequest, match="X-Facegate-Case must be printable ASCII"):
        merge_case_context(BOUND, {"x-facegate-case": "2026\u20131"})


def test_a_stored_context_that_is_no_code_is_kept_for_the_policy_to_refuse() -> None:
    stored = CaseContext.from_store(offense="KİDNAPPİNG", purpose="Criminal_Investigation")
    assert (stored.offense, stored.purpose) == ("KİDNAPPİNG", "Criminal_Investigation")
    assert CaseContext.from_store(offense="Homicide").offense == "homicide"
