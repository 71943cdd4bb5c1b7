"""Audiences: public reports aggregate, hide small counts, and hide enough more that no small
count can be recovered by subtraction; oversight reports keep every value."""

from __future__ import annotations

from typing import Any

from gateway.reports.disclosure import COMPLEMENTARY, suppressed
from gateway.reports.results import Cell
from tests.reports.support import Log, at, search

SMALL = "fewer than 5"


def _figure(report: Any, name: str) -> Any:
    return next(f.value for f in report.figures if f.definition.id == name)


async def _agencies(log: Log, counts: dict[str, int]) -> None:
    for agency, count in counts.items():
        for i in range(count):
            await log.add(search(when=at(1 + i % 2, 1 + i % 20), agency=agency))


async def test_a_small_count_is_shown_as_fewer_than_the_threshold(log: Log) -> None:
    await _agencies(log, {"Small PD": 3, "Metro PD": 20, "County SO": 30})

    public = await log.report("transparency", audience="public")
    oversight = await log.report("transparency", audience="oversight")

    by_agency = {c["group"]["agency"]: c["value"] for c in _figure(public, "searches_by_agency")}
    assert by_agency["Small PD"] == SMALL
    assert _figure(public, "searches") == 53
    exact = {c["group"]["agency"]: c["value"] for c in _figure(oversight, "searches_by_agency")}
    assert exact == {"Small PD": 3, "Metro PD": 20, "County SO": 30}


async def test_the_small_count_cannot_be_recovered_from_the_total(log: Log) -> None:
    await _agencies(log, {"Small PD": 3, "Metro PD": 20, "County SO": 30})

    public = await log.report("transparency", audience="public")

    total = _figure(public, "searches")
    by_agency = {c["group"]["agency"]: c["value"] for c in _figure(public, "searches_by_agency")}
    shown = [v for v in by_agency.values() if isinstance(v, int)]
    # Subtracting what is shown from the total leaves the sum of at least two hidden cells,
    # which is at least the threshold: not the small one.
    assert by_agency["Metro PD"] == COMPLEMENTARY
    assert total - sum(shown) == 23
    assert sum(1 for v in by_agency.values() if not isinstance(v, int)) >= 2


async def test_a_table_hides_a_complement_in_every_row_and_column(log: Log) -> None:
    # Small PD searched 3 times in January; its row total and the January column total are
    # both published (searches_by_agency, searches_by_month).
    for i in range(3):
        await log.add(search(when=at(1, 1 + i), agency="Small PD"))
    for i in range(12):
        await log.add(search(when=at(2, 1 + i), agency="Small PD"))
    for month in (1, 2):
        for i in range(10):
            await log.add(search(when=at(month, 1 + i), agency="Metro PD"))

    public = await log.report("transparency", audience="public")

    cells = {
        (c["group"]["agency"], c["group"]["month"]): c["value"]
        for c in _figure(public, "searches_by_agency_and_month")
    }
    assert cells[("Small PD", "2026-01")] == SMALL
    for line in (
        [k for k in cells if k[0] == "Small PD"],
        [k for k in cells if k[1] == "2026-01"],
    ):
        hidden = [k for k in line if not isinstance(cells[k], int)]
        assert len(hidden) >= 2, (line, cells)


def test_complementary_suppression_hides_at_least_the_threshold() -> None:
    cells = [Cell({"a": n}, n, n) for n in (1, 2, 9, 40)]

    hidden = suppressed(cells, 5)

    # 1 and 2 are small; together only 3, so the next smallest (9) goes too.
    assert hidden == {0: "fewer than 5", 1: "fewer than 5", 2: COMPLEMENTARY}


def test_nothing_is_hidden_when_nothing_is_small() -> None:
    assert suppressed([Cell({"a": n}, n, n) for n in (5, 6, 70)], 5) == {}


async def test_a_public_report_names_no_case_or_officer(log: Log) -> None:
    await _agencies(log, {"Metro PD": 8})

    for template in ("massachusetts", "utah", "maryland", "washington", "transparency"):
        public = await log.report(template, audience="public")
        text = public.model_dump_json()
        assert "2026-HOM-0001" not in text and "officer-1" not in text, template
        oversight = await log.report(template, audience="oversight")
        if template in {"massachusetts", "utah"}:
            assert "2026-HOM-0001" in oversight.model_dump_json(), template
