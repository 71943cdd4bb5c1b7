"""The activity plan itself: what one request adds and reads, pinned member by member.

Every store carries the plan out alike, and a reservation's undo follows its adds, so the
plan is pinned here beside the counts (test_activity.py) and the policy inputs
(test_gathered_inputs.py). What a plan takes from who asks and under which case is built
once per (officer, agency, case) and kept (`windows._layout`): those tests also check that
a kept layout never answers for another request's officer, agency or case, and that what is
kept stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gateway.context.activity import ActivityEvent, plan, windows
from gateway.operations import OperationKind

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
CASE = "case:4771a9d361186f3c878d175a7c15bfe6"  # Metro PD's C-1
MARK = '["Metro PD", "C-1"]'


@pytest.fixture(autouse=True)
def no_kept_layouts() -> Iterator[None]:
    windows._layout.cache_clear()
    yield
    windows._layout.cache_clear()


def enrolment(**fields: object) -> ActivityEvent:
    values: dict[str, object] = {
        "request_id": "r1",
        "at": AT,
        "officer": "officer-1",
        "agency": "Metro PD",
        "case_number": "C-1",
        "kind": OperationKind.ENROLL,
        "probe_digests": ("sha256:a", "sha256:b"),
        "faces_in_probe": 3,
        "compared_identities": ("person-7",),
        "face_sources": (("src-1", "0"), ("src-1", "2")),
        "probe_identities": ("phash:0123456789abcdef",),
    }
    values.update(fields)
    return ActivityEvent(**values)  # type: ignore[arg-type]


def test_a_plan_adds_and_reads_these_members_in_this_order() -> None:
    steps = plan(enrolment())
    assert steps.now_ms == int(AT.timestamp() * 1000)
    events = [
        (f"{scope}:{stream}", f"r1:{i}", False)
        for scope in ("officer:officer-1", "agency:Metro PD", CASE)
        for stream, n in (("requests", 1), ("probes", 2), ("enrolments", 3))
        for i in range(n)
    ]
    probe = "phash:0123456789abcdef"
    bands = ("probe:phash:0:0123", "probe:phash:1:4567", "probe:phash:2:89ab", "probe:phash:3:cdef")
    assert [tuple(add) for add in steps.adds] == [
        *events,
        ("officer:officer-1:distinct_probes", probe, True),
        ("officer:officer-1:distinct_cases", MARK, True),
        ("officer:officer-1:distinct_identities", "person-7", True),
        ("agency:Metro PD:distinct_probes", probe, True),
        ("agency:Metro PD:distinct_cases", MARK, True),
        (f"{CASE}:distinct_probes", probe, True),
        (f"{CASE}:distinct_identities", "person-7", True),
        *((f"{band}:distinct_cases", MARK, True) for band in bands),
        ("source:src-1:distinct_faces", "0", True),
        ("source:src-1:distinct_faces", "2", True),
    ]
    streams = ("requests", "probes", "identifications", "enrolments", "distinct_probes")
    every = tuple(windows.WINDOWS)
    assert [tuple(read) for read in steps.reads] == [
        *(("officer", s, f"officer:officer-1:{s}", every) for s in streams),
        ("officer", "distinct_cases", "officer:officer-1:distinct_cases", every),
        ("officer", "distinct_identities", "officer:officer-1:distinct_identities", every),
        *(("agency", s, f"agency:Metro PD:{s}", every) for s in streams),
        ("agency", "distinct_cases", "agency:Metro PD:distinct_cases", every),
        *(("case", s, f"{CASE}:{s}", every) for s in streams),
        ("case", "distinct_identities", f"{CASE}:distinct_identities", every),
        *(("probe", "distinct_cases", f"{band}:distinct_cases", every) for band in bands),
        ("source", "distinct_faces", "source:src-1:distinct_faces", every),
    ]


def test_a_plan_reads_only_what_the_policy_reads_and_adds_the_same() -> None:
    reads = frozenset(
        {
            ("officer", "requests", "minute"),
            ("officer", "requests", "second"),
            ("case", "enrolments", "day"),
            ("probe", "distinct_cases", "day"),
            ("agency", "probes", "hour"),
        }
    )
    every = plan(enrolment())
    steps = plan(enrolment(), reads=reads)
    assert steps.adds == every.adds  # what the windows count does not depend on the reads
    bands = ("probe:phash:0:0123", "probe:phash:1:4567", "probe:phash:2:89ab", "probe:phash:3:cdef")
    assert [tuple(read) for read in steps.reads] == [
        ("officer", "requests", "officer:officer-1:requests", ("second", "minute")),
        ("agency", "probes", "agency:Metro PD:probes", ("hour",)),
        ("case", "enrolments", f"{CASE}:enrolments", ("day",)),
        *(("probe", "distinct_cases", f"{band}:distinct_cases", ("day",)) for band in bands),
    ]
    assert steps.since(steps.reads[0]) == (steps.now_ms - 1000, steps.now_ms - 60_000)
    # Every read's starts at once, each window tuple worked out once: the same as one by one.
    now = steps.now_ms
    assert steps.starts() == [
        (now - 1000, now - 60_000),
        (now - 3_600_000,),
        *[(now - 86_400_000,)] * 5,
    ]
    assert every.starts() == [every.since(read) for read in every.reads]
    # Two reads whose windows begin alike but differ after: each has its own.
    alike = plan(enrolment(), reads=reads | {("agency", "probes", "second")})
    assert alike.starts()[:2] == [(now - 1000, now - 60_000), (now - 1000, now - 3_600_000)]
    counts = steps.counts([[1, 2], [3], [4], [0], [5], [1], [0]])
    assert counts == {
        "officer": {"requests": {"second": 1, "minute": 2}},
        "agency": {"probes": {"hour": 3}},
        "case": {"enrolments": {"day": 4}},
        "probe": {"distinct_cases": {"day": 5}},
    }
    # Read nothing, count the same.
    nothing = plan(enrolment(), reads=frozenset())
    assert (nothing.adds, nothing.reads) == (every.adds, ())


@pytest.mark.parametrize(
    "declared",
    [
        {"officer": "requests"},
        [["officer", "requests"]],
        [["officer", "requests", "week"]],
        [["officer", "faces", "day"]],
        [["probe", "requests", "day"]],
        [["source", "distinct_faces", 1]],
    ],
)
def test_a_policy_may_declare_only_counts_the_windows_keep(declared: object) -> None:
    with pytest.raises(ValueError, match="activity_reads"):
        windows.activity_reads(declared)


def test_a_declared_read_is_a_triple() -> None:
    assert windows.activity_reads(
        [["case", "probes", "ten_seconds"], ["source", "distinct_faces", "day"]]
    ) == {
        ("case", "probes", "ten_seconds"),
        ("source", "distinct_faces", "day"),
    }


def test_a_request_without_a_case_adds_and_reads_no_case_key() -> None:
    for case in (None, ""):
        steps = plan(enrolment(case_number=case, kind=OperationKind.IDENTIFY))
        added = [add.key for add in steps.adds]
        keys = added + [read.key for read in steps.reads]
        assert not [key for key in keys if key.startswith("case:")]
        assert not [key for key in added if key.endswith(":distinct_cases")]  # no case to mark
        assert "officer:officer-1:distinct_identities" in added


def test_a_kept_layout_answers_only_for_its_own_officer_agency_and_case() -> None:
    asked = [
        enrolment(),
        enrolment(officer="officer-2"),
        enrolment(agency="State Police"),
        enrolment(case_number="C-2"),
        enrolment(case_number=None),
        enrolment(officer="officer-2", case_number="C-2"),
        enrolment(),
    ]
    for event in asked:  # each planned after the ones before it
        steps = plan(event)
        scopes = {"officer": f"officer:{event.officer}:", "agency": f"agency:{event.agency}:"}
        if event.case_number:
            case_id = windows._case_id(event.agency, event.case_number)
            scopes["case"] = f"case:{case_id}:"
        mark = f'["{event.agency}", "{event.case_number}"]'
        for key, member, _ in steps.adds:
            scope = key.split(":")[0]
            if scope in ("officer", "agency", "case"):
                assert key.startswith(scopes[scope]), (event, key)
            if key.endswith(":distinct_cases"):
                assert member == mark, (event, key, member)
        for read in steps.reads:
            if read.scope in scopes:
                assert read.key == scopes[read.scope] + read.stream, (event, read)
        assert {read.scope for read in steps.reads} & {"officer", "agency", "case"} == set(scopes)


def test_the_kept_layouts_are_bounded() -> None:
    for n in range(windows._LAYOUTS_KEPT + 10):
        plan(enrolment(officer=f"officer-{n}"))
    assert windows._layout.cache_info().currsize == windows._LAYOUTS_KEPT


def test_a_count_below_zero_adds_nothing() -> None:
    steps = plan(enrolment(faces_in_probe=-2, probe_digests=("sha256:a", "sha256:b", "sha256:c")))
    assert not [add for add in steps.adds if ":enrolments" in add.key]
    assert len([add for add in steps.adds if ":probes" in add.key]) == 3 * 3


def test_counts_keep_the_largest_of_the_keys_that_answer_one_path() -> None:
    steps = plan(enrolment())
    results = [[0, 0, 0, 0, 0] for _ in steps.reads]
    bands = [i for i, read in enumerate(steps.reads) if read.scope == "probe"]
    results[bands[0]] = [1, 1, 1, 1, 4]
    results[bands[2]] = [0, 2, 2, 2, 2]
    counts = steps.counts(results)
    assert counts["probe"]["distinct_cases"] == {
        "second": 1,
        "ten_seconds": 2,
        "minute": 2,
        "hour": 2,
        "day": 4,
    }
    assert list(counts) == ["officer", "agency", "case", "probe", "source"]
