"""Misuse signals fire on crafted histories, name the entries behind them, and stay silent
on an ordinary one."""

from __future__ import annotations

from typing import Any

from tests.reports.support import Log, at, authorisation, search


def _signal(report: Any, name: str) -> list[dict[str, Any]]:
    value = next(f.value for f in report.figures if f.definition.id == name)
    assert isinstance(value, list)
    return value


async def _ordinary(log: Log) -> None:
    """Five officers, each with their own cases, searching a few times a month."""
    for officer in range(5):
        for month in (10, 11, 12):
            for i in range(3 + officer % 2):
                await log.add(
                    search(
                        when=at(month, 1 + i),
                        officer=f"officer-{officer}",
                        case=f"2026-ROB-{officer}{month}",
                        offense="robbery",
                    )
                )


async def test_an_ordinary_history_raises_no_signal(log: Log) -> None:
    await _ordinary(log)

    report = await log.report("misuse-signals", period="2026-Q4")

    for figure in report.figures:
        assert figure.value == [], figure.definition.id


async def test_an_officer_far_above_their_peers_is_named_with_their_searches(log: Log) -> None:
    await _ordinary(log)
    seqs = []
    for i in range(60):  # the Evansville pattern: volume behind one real case number
        records = search(when=at(11, 1 + i % 28), officer="officer-x", case="2026-ROB-011")
        seqs.append((await log.add(records))[0])

    report = await log.report("misuse-signals", period="2026-Q4")

    (flagged,) = _signal(report, "officer_volume")
    assert flagged["officer"] == "officer-x" and flagged["searches"] == 60
    assert flagged["entries"] == seqs
    # The same case number is also now searched under unusually often.
    assert [c["case_number"] for c in _signal(report, "case_reuse")] == ["2026-ROB-011"]


async def test_a_case_shared_out_to_many_officers_is_named(log: Log) -> None:
    await _ordinary(log)
    seqs = []
    for officer in range(7):
        seqs += await log.add(
            search(when=at(12, 1 + officer), officer=f"officer-{officer}", case="2026-HOM-SHARED")
        )

    report = await log.report("misuse-signals", period="2026-Q4")

    (case,) = _signal(report, "case_reuse")
    assert case["case_number"] == "2026-HOM-SHARED" and len(case["officers"]) == 7
    decisions = seqs[::2]  # each search is a decision and an outcome: the decision counts
    assert case["entries"] == decisions


async def test_trying_until_allowed_is_named_with_the_refusals(log: Log) -> None:
    await _ordinary(log)
    refused = await log.add(
        search(
            when=at(11, 5),
            officer="officer-2",
            case="2026-X-1",
            allow=False,
            reasons=("offense_not_allowed",),
            probe="sha256:probe-a",
        )
    )
    # Same probe, another case and officer: the refusal is walked around.
    allowed = await log.add(
        search(when=at(11, 6), officer="officer-3", case="2026-Y-2", probe="sha256:probe-a")
    )

    report = await log.report("misuse-signals", period="2026-Q4")

    (retry,) = _signal(report, "retry_after_refusal")
    assert retry["refused_before"] == refused and retry["search"] == allowed[0]
    assert retry["entries"] == [*refused, allowed[0]]


async def test_exigent_use_authorisations_and_protected_places(log: Log) -> None:
    await _ordinary(log)
    exigent = []
    for i in range(4):
        exigent += await log.add(
            search(when=at(10, 10 + i), officer="officer-1", legal_basis="exigent")
        )
    overdue = await log.add([authorisation("overdue", when=at(10, 20))])
    refused = await log.add([authorisation("refused", when=at(10, 21))])
    await log.add([authorisation("granted", when=at(10, 22))])
    place = await log.add(
        search(when=at(11, 1), officer="officer-4", allow=False, reasons=("protected_place",))
    )

    report = await log.report("misuse-signals", period="2026-Q4")

    (use,) = _signal(report, "exigent_use")
    assert use["officer"] == "officer-1" and use["exigent_searches"] == 4 and use["flagged"]
    assert use["entries"] == exigent[::2]
    states = {(a["state"], tuple(a["entries"])) for a in _signal(report, "authorisations")}
    assert states == {("overdue", tuple(overdue)), ("refused", tuple(refused))}
    (protected,) = _signal(report, "protected_place_refusals")
    assert protected["officer"] == "officer-4" and protected["entries"] == place
