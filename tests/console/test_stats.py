"""The dashboard's figures, counted from records alone (leads as the shared contract has them)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.console.stats import MISUSE_CODES, Row, tally, week_of

REPO = Path(__file__).resolve().parents[2]


def row(seq: int, event_type: str, **fields: Any) -> Row:
    values: dict[str, Any] = {
        "time": datetime(2026, 11, 30, 12, tzinfo=UTC),
        "decision": None,
        "reason_codes": [],
        "legal_basis": None,
        "agency": "Metro PD",
        "officer": "officer-1",
        "vendor": "rekognition",
        "operation_kind": None,
        "detail": {},
    }
    return Row(seq=seq, event_type=event_type, **(values | fields))


def test_searches_refusals_leads_and_authorisations_are_counted() -> None:
    rows = [
        row(1, "decision", operation_kind="identify", decision="allow", legal_basis="warrant"),
        row(2, "decision", operation_kind="identify", decision="deny", reason_codes=["a", "b"]),
        row(3, "decision", operation_kind="detect", decision="allow"),  # not a search
        row(4, "auth_failure", decision="deny", reason_codes=["unknown_access_key"]),
        row(5, "lead"),
        row(6, "lead"),
        row(7, "lead"),
        row(8, "lead_review", decision="allow", detail={"verdict": "confirmed"}),
        row(9, "lead_review", decision="deny", reason_codes=["reviewer_is_searcher"]),
        row(10, "authorisation", detail={"authorisation_id": "A1", "state": "opened"}),
        row(11, "authorisation", detail={"authorisation_id": "A1", "state": "overdue"}),
        row(12, "decision", decision="deny", reason_codes=["burst", "missing_case_number"]),
    ]
    figures = tally(rows)
    assert figures.records == 12
    assert (figures.searches, figures.searches_refused) == (2, 1)
    assert figures.identifications_by_basis == {"warrant": 1}
    assert figures.refusals_by_reason == {
        "a": 1,
        "b": 1,
        "unknown_access_key": 1,
        "reviewer_is_searcher": 1,
        "burst": 1,
        "missing_case_number": 1,
    }
    assert figures.misuse_by_code == {"burst": 1}
    assert figures.misuse_by_officer == {"officer-1 (Metro PD)": 1}
    # A refused review is no outcome; leads never reviewed are shown as such.
    assert figures.leads_by_outcome == {"confirmed": 1, "not yet reviewed": 2}
    assert figures.authorisations_by_state == {"overdue": 1}
    week = week_of(rows[0].time)
    charts = figures.charts()
    assert charts["searches_by_week"] == {
        "labels": [week],
        "series": {"allowed": [1], "refused": [1]},
    }
    assert charts["searches_by_agency"]["series"]["count"] == [2]


def test_misuse_codes_are_the_policys_surveillance_pattern_codes() -> None:
    rego = (REPO / "policies" / "facegate.rego").read_text()
    start = rego.index("# --- mass-surveillance patterns")
    end = rego.index("# ---", start + 10)
    assert set(re.findall(r'reason\("([a-z_]+)"', rego[start:end])) == MISUSE_CODES
