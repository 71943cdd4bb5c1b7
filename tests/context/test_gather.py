"""Which case context a request is judged under: the session's, completed by headers."""

from __future__ import annotations

import pytest

from gateway.context.case import CaseContext, LegalBasis
from gateway.context.gather import merge_case_context
from gateway.errors import MalformedRequest

BOUND = CaseContext(purpose="criminal_investigation", case_number="2026-1", offense=None)


def test_headers_fill_what_the_session_left_empty() -> None:
    context, conflicts = merge_case_context(
        BOUND, {"x-facegate-offense": "robbery", "x-facegate-legal-basis": "exigent"}
    )
    assert context.offense == "robbery"
    assert context.legal_basis is LegalBasis.EXIGENT
    assert conflicts == []


def test_the_session_wins_and_a_contradiction_is_reported() -> None:
    context, conflicts = merge_case_context(BOUND, {"x-facegate-case": "2026-999"})
    assert context.case_number == "2026-1"
    assert conflicts == ["case_number"]


def test_a_header_repeating_the_session_is_no_conflict() -> None:
    _, conflicts = merge_case_context(BOUND, {"x-facegate-case": "2026-1"})
    assert conflicts == []


def test_an_unknown_legal_basis_is_a_clear_error() -> None:
    with pytest.raises(MalformedRequest, match="X-Facegate-Legal-Basis must be one of"):
        merge_case_context(BOUND, {"x-facegate-legal-basis": "hunch"})
