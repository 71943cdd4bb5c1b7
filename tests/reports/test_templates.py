"""Templates are data: an admin adds one as a file, and a bad one is refused naming the
file and the key. The query vocabulary means what its documentation says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.reports.query import predicate
from gateway.reports.templates import TemplateError, load_templates
from tests.reports.support import POLICIES, Log, at, search

SEVEN = {
    "massachusetts",
    "utah",
    "montana",
    "maryland",
    "washington",
    "eu-ai-act-26-10",
    "transparency",
}


def test_the_seven_templates_and_the_signals_load_each_field_with_its_legal_source() -> None:
    templates = load_templates(POLICIES)
    assert SEVEN | {"misuse-signals"} == set(templates)
    for template in templates.values():
        assert template.law
        assert all(field.source for field in template.fields)


def _policies(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES / "reports", tmp_path / "policies" / "reports")).parent


async def test_an_admin_adds_a_template_without_code(log: Log, tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    (policies / "reports" / "templates" / "robberies.yaml").write_text(
        """
id: robberies
title: Robbery searches
law: a city council ordinance
period: month
audiences: [public]
description: searches for robberies
fields:
  - id: robbery_searches
    label: Robbery searches
    source: ordinance 12(b)
    query:
      where: {event_type: outcome, operation_kind: identify, offense: robbery}
      count: records
"""
    )
    for day in range(1, 8):
        await log.add(search(when=at(3, day), offense="robbery"))
    await log.add(search(when=at(3, 9), offense="homicide"))
    await log.add(search(when=at(4, 9), offense="robbery"))

    report = await log.report("robberies", period="2026-03", audience="public", policy_dir=policies)

    assert report.figures[0].value == 7


@pytest.mark.parametrize(
    ("field", "complaint"),
    [
        ("query: {where: {nonsense: 1}, count: records}", "unknown field 'nonsense'"),
        ("query: {count: records, sum: match_count}", "exactly one of"),
        ("query: {group_by: [officer], count: records}", "may not group by ['officer']"),
        ("query: {list: [time]}", "names individual entries"),
        ("query: {where: {decision: {like: x}}, count: records}", "must be a value, a list"),
    ],
)
def test_a_bad_template_is_refused_naming_file_and_key(
    tmp_path: Path, field: str, complaint: str
) -> None:
    policies = _policies(tmp_path)
    path = policies / "reports" / "templates" / "bad.yaml"
    path.write_text(
        "id: bad\ntitle: t\nlaw: l\nperiod: year\naudiences: [public]\ndescription: d\n"
        f"fields:\n  - id: f\n    label: f\n    source: s\n    {field}\n"
    )

    with pytest.raises(TemplateError) as raised:
        load_templates(policies)

    assert "bad.yaml" in str(raised.value) and complaint in str(raised.value)


def test_conditions_on_lists_details_and_absent_values() -> None:
    record = {
        "seq": 1,
        "time": "2026-11-03T10:00:00.000000Z",
        "event_type": "decision",
        "reason_codes": ["warrant_unknown", "burst"],
        "detail": {"warrant": {"kind": "warrant"}},
    }
    assert predicate({"reason_codes": "burst"})(record)
    assert predicate({"reason_codes": {"in": ["x", "warrant_unknown"]}})(record)
    assert not predicate({"reason_codes": {"not": "burst"}})(record)
    assert predicate({"reason_codes": {"not_in": ["x"]}})(record)
    assert predicate({"detail.warrant.kind": "warrant"})(record)
    assert not predicate({"detail.warrant.kind": "court_order"})(record)
    assert predicate({"officer": {"exists": False}})(record)
    assert not predicate({"reason_codes": {"exists": False}})(record)
    assert predicate({"event_type": ["outcome", "decision"]})(record)
