"""Activity windows on both stores: in-process, and Redis at 127.0.0.1:6379 for real."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from gateway.context.activity import (
    ActivityEvent,
    ActivityStore,
    ActivityUnavailable,
    MemoryActivityStore,
    RedisActivityStore,
)
from gateway.context.activity.memory import _SWEEP_EVERY, _SortedSet
from gateway.operations import OperationKind

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _drop_keys(prefix: str) -> None:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, so parallel runs never see each other's counts."""
    prefix = f"facegate:test:{uuid.uuid4().hex}:"
    yield prefix
    await _drop_keys(prefix)


StoreFactory = Callable[[], ActivityStore]


@pytest.fixture(params=["memory", "redis"])
async def new_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[StoreFactory]:
    """Makes stores that share one state: one process's store, or clients of one Redis."""
    made: list[ActivityStore] = []
    memory = MemoryActivityStore()

    def make() -> ActivityStore:
        store: ActivityStore = (
            memory
            if request.param == "memory"
            # A generous timeout: these tests check counting, not how a slow Redis fails
            # (that is test_an_unreachable_redis_is_reported), on a machine that may be busy.
            else RedisActivityStore(REDIS_URL, key_prefix=redis_prefix, timeout_seconds=10.0)
        )
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


def event(
    n: int = 0,
    *,
    at: datetime = T0,
    officer: str = "officer-1",
    agency: str = "Metro PD",
    case: str | None = "C-1",
    kind: OperationKind = OperationKind.IDENTIFY,
    probes: tuple[str, ...] = ("sha256:aa",),
    faces: int | None = 1,
) -> ActivityEvent:
    return ActivityEvent(
        request_id=f"r{n}-{uuid.uuid4().hex[:8]}",
        at=at,
        officer=officer,
        agency=agency,
        case_number=case,
        kind=kind,
        probe_digests=probes,
        faces_in_probe=faces,
    )


def at(counts: dict[str, Any], scope: str, stream: str, window: str) -> int:
    value: int = counts[scope][stream][window]
    return value


async def test_counts_include_the_request_being_decided(new_store: StoreFactory) -> None:
    store = new_store()
    counts = (await store.reserve(event())).counts
    assert at(counts, "officer", "requests", "second") == 1
    assert at(counts, "officer", "identifications", "day") == 1
    assert at(counts, "case", "probes", "ten_seconds") == 1
    assert at(counts, "agency", "distinct_cases", "day") == 1
    assert at(counts, "probe", "distinct_cases", "day") == 1


async def test_windows_slide(new_store: StoreFactory) -> None:
    store = new_store()
    await store.reserve(event(1, at=T0))
    await store.reserve(event(2, at=T0 + timedelta(seconds=5)))
    counts = (await store.reserve(event(3, at=T0 + timedelta(seconds=12)))).counts
    assert at(counts, "officer", "probes", "second") == 1
    assert at(counts, "officer", "probes", "ten_seconds") == 2  # T0 has slid out
    assert at(counts, "officer", "probes", "minute") == 3
    later = (await store.reserve(event(4, at=T0 + timedelta(hours=2)))).counts
    assert at(later, "officer", "identifications", "hour") == 1
    assert at(later, "officer", "identifications", "day") == 4
    next_day = (await store.reserve(event(5, at=T0 + timedelta(days=1, seconds=6)))).counts
    # the day now starts at T0 + 6 s: 3 (T0 + 12 s), 4 (T0 + 2 h) and 5 are in it
    assert at(next_day, "officer", "identifications", "day") == 3


async def test_scopes_are_separate(new_store: StoreFactory) -> None:
    store = new_store()
    await store.reserve(event(1, officer="officer-1"))
    counts = (await store.reserve(event(2, officer="officer-2"))).counts
    assert at(counts, "officer", "requests", "minute") == 1
    assert at(counts, "agency", "requests", "minute") == 2
    assert at(counts, "case", "requests", "minute") == 2
    other_agency = (await store.reserve(event(3, agency="State Police"))).counts
    # Case numbers are per agency: C-1 of another agency is another case.
    assert at(other_agency, "case", "requests", "minute") == 1


async def test_distinct_cases_and_probes(new_store: StoreFactory) -> None:
    store = new_store()
    for n, case in enumerate(["C-1", "C-1", "C-2", "C-3"]):
        counts = (await store.reserve(event(n, case=case, probes=("sha256:same",)))).counts
    assert at(counts, "officer", "distinct_cases", "day") == 3
    assert at(counts, "probe", "distinct_cases", "day") == 3
    assert at(counts, "officer", "distinct_probes", "day") == 1
    assert at(counts, "officer", "identifications", "day") == 4
    fresh = (await store.reserve(event(9, case="C-1", probes=("sha256:new",)))).counts
    assert at(fresh, "probe", "distinct_cases", "day") == 1
    assert at(fresh, "officer", "distinct_probes", "day") == 2


async def test_the_probe_count_is_the_largest_over_the_requests_probes(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    await store.reserve(event(1, case="C-1", probes=("sha256:a",)))
    await store.reserve(event(2, case="C-2", probes=("sha256:a",)))
    counts = (await store.reserve(event(3, case="C-3", probes=("sha256:b", "sha256:a")))).counts
    assert at(counts, "probe", "distinct_cases", "day") == 3


async def test_enrolments_count_faces(new_store: StoreFactory) -> None:
    store = new_store()
    await store.reserve(event(1, kind=OperationKind.ENROLL, faces=16))
    counts = (await store.reserve(event(2, kind=OperationKind.ENROLL, faces=None))).counts
    assert at(counts, "officer", "enrolments", "day") == 17  # an unknown count counts as 1
    assert at(counts, "officer", "identifications", "day") == 0
    assert at(counts, "officer", "distinct_cases", "day") == 0


async def test_faces_enrolled_after_the_fact_count_once_beside_the_reservation(
    new_store: StoreFactory,
) -> None:
    store, other = new_store(), new_store()
    counted = event(1, kind=OperationKind.ENROLL, faces=4)
    await store.reserve(counted)
    await store.record_after(counted, stream="enrolments", count=16)  # the vendor's count
    await store.record_after(counted, stream="enrolments", count=16)  # idempotent
    unseen = event(2, kind=OperationKind.ENROLL, faces=None)  # counted as 1 at reserve
    await store.reserve(unseen)
    await other.record_after(unseen, stream="enrolments", count=0)  # fewer: the 1 stands
    counts = (await other.reserve(event(3, kind=OperationKind.ENROLL, faces=2))).counts
    assert at(counts, "officer", "enrolments", "day") == 16 + 1 + 2
    assert at(counts, "case", "enrolments", "day") == 19
    assert at(counts, "agency", "enrolments", "hour") == 19
    # Counted at the request's time: it slides out of the windows with it.
    later = (await other.reserve(event(4, at=T0 + timedelta(hours=2), faces=None))).counts
    assert at(later, "officer", "enrolments", "hour") == 0
    assert at(later, "officer", "enrolments", "day") == 19


async def test_only_event_streams_are_counted_after_the_fact(new_store: StoreFactory) -> None:
    with pytest.raises(ValueError, match="distinct_cases"):
        await new_store().record_after(event(), stream="distinct_cases", count=1)


async def test_a_released_reservation_is_not_counted(new_store: StoreFactory) -> None:
    store = new_store()
    await store.reserve(event(1))
    refused = await store.reserve(event(2, case="C-2"))
    assert at(refused.counts, "officer", "distinct_cases", "day") == 2
    await store.release(refused)
    await store.release(refused)  # idempotent
    counts = (await store.reserve(event(3))).counts
    assert at(counts, "officer", "requests", "minute") == 2
    assert at(counts, "officer", "distinct_cases", "day") == 1


async def test_two_clients_see_one_count(new_store: StoreFactory) -> None:
    first, second = new_store(), new_store()
    await first.reserve(event(1))
    await second.reserve(event(2))
    counts = (await first.reserve(event(3))).counts
    assert at(counts, "officer", "requests", "minute") == 3


async def test_concurrent_reservations_each_see_a_different_count(
    new_store: StoreFactory,
) -> None:
    stores = [new_store() for _ in range(4)]
    reservations = await asyncio.gather(*(stores[n % 4].reserve(event(n)) for n in range(40)))
    seen = sorted(at(r.counts, "officer", "requests", "minute") for r in reservations)
    # Atomic: no two requests were told the same count, so none slips under a limit.
    assert seen == list(range(1, 41))


async def test_an_unreachable_redis_is_reported() -> None:
    store = RedisActivityStore("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    try:
        with pytest.raises(ActivityUnavailable):
            await store.reserve(event())
    finally:
        await store.aclose()


async def test_redis_keys_expire_after_the_longest_window(redis_prefix: str) -> None:
    store = RedisActivityStore(REDIS_URL, key_prefix=redis_prefix)
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await store.reserve(event())
        keys = [key async for key in client.scan_iter(match=redis_prefix + "*")]
        assert keys
        ttls = [await client.pttl(key) for key in keys]
        assert all(86_400_000 < ttl <= 86_460_000 for ttl in ttls)
        # Members name requests and digests: no image bytes, no templates.
        members = await client.zrange(keys[0], 0, -1)
        assert all(len(member) < 200 for member in members)
    finally:
        await client.aclose()
        await store.aclose()


async def test_taking_back_a_distinct_mark_restores_when_it_was_last_seen(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    await store.reserve(event(1, at=T0, case="C-1"))
    refused = await store.reserve(event(2, at=T0 + timedelta(hours=23), case="C-1"))
    await store.release(refused)
    # C-1 was last seen (by an allowed request) at T0, so a day later it has aged out.
    counts = (await store.reserve(event(3, at=T0 + timedelta(days=1, hours=1), case="C-2"))).counts
    assert at(counts, "officer", "distinct_cases", "day") == 1


async def test_a_later_mark_is_not_undone_by_an_earlier_refusal(new_store: StoreFactory) -> None:
    store = new_store()
    refused = await store.reserve(event(1, at=T0, case="C-1"))
    await store.reserve(event(2, at=T0 + timedelta(hours=1), case="C-1"))
    await store.release(refused)
    counts = (await store.reserve(event(3, at=T0 + timedelta(hours=2), case="C-2"))).counts
    assert at(counts, "officer", "distinct_cases", "day") == 2


# -- classification by effect (issue 10): stored identities and face sources -------------


def comparison(
    n: int, identity: str, *, officer: str = "officer-1", case: str | None = "C-1"
) -> ActivityEvent:
    """A verification of a probe against one stored identity."""
    return ActivityEvent(
        request_id=f"v{n}-{uuid.uuid4().hex[:8]}",
        at=T0 + timedelta(seconds=n),
        officer=officer,
        agency="Metro PD",
        case_number=case,
        kind=OperationKind.VERIFY,
        probe_digests=("sha256:probe",),
        compared_identities=(identity,),
    )


async def test_distinct_identities_are_counted_per_case_and_officer(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    first = (await store.reserve(comparison(1, "azure:lpg:g/person:p1"))).counts
    again = (await store.reserve(comparison(2, "azure:lpg:g/person:p1"))).counts
    second = (await store.reserve(comparison(3, "azure:lpg:g/person:p2"))).counts
    assert at(first, "case", "distinct_identities", "day") == 1
    assert at(again, "case", "distinct_identities", "day") == 1  # one identity, checked twice
    assert at(second, "case", "distinct_identities", "day") == 2
    assert at(second, "officer", "distinct_identities", "day") == 2
    assert "distinct_identities" not in second["agency"]
    # Another case of the same officer starts its own count; the officer's goes on.
    other = (await store.reserve(comparison(4, "azure:lpg:g/person:p3", case="C-2"))).counts
    assert at(other, "case", "distinct_identities", "day") == 1
    assert at(other, "officer", "distinct_identities", "day") == 3


async def test_a_refused_comparison_does_not_count_its_identity(new_store: StoreFactory) -> None:
    store = new_store()
    await store.reserve(comparison(1, "id:a"))
    refused = await store.reserve(comparison(2, "id:b"))
    assert at(refused.counts, "case", "distinct_identities", "day") == 2
    await store.release(refused)
    counts = (await store.reserve(comparison(3, "id:a"))).counts
    assert at(counts, "case", "distinct_identities", "day") == 1


async def test_comparisons_against_stored_identities_mark_the_case_as_searched(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    await store.reserve(comparison(1, "id:a", case="C-1"))
    counts = (await store.reserve(comparison(2, "id:a", case="C-2"))).counts
    assert at(counts, "officer", "distinct_cases", "day") == 2
    assert at(counts, "probe", "distinct_cases", "day") == 2
    plain = (await store.reserve(event(3, kind=OperationKind.VERIFY, case="C-3"))).counts
    assert at(plain, "officer", "distinct_cases", "day") == 2  # two images: no stored identity


def by_face_id(n: int, *faces: tuple[str, str], officer: str = "officer-1") -> ActivityEvent:
    return ActivityEvent(
        request_id=f"f{n}-{uuid.uuid4().hex[:8]}",
        at=T0 + timedelta(seconds=n),
        officer=officer,
        agency="Metro PD",
        case_number=f"C-{n}",
        kind=OperationKind.IDENTIFY,
        face_sources=faces,
    )


async def test_faces_of_one_source_are_counted_whoever_searches_them(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    await store.reserve(by_face_id(1, ("sha256:crowd", "f1")))
    await store.reserve(by_face_id(2, ("sha256:crowd", "f1")))  # the same face again
    counts = (await store.reserve(by_face_id(3, ("sha256:crowd", "f2"), officer="o-2"))).counts
    assert at(counts, "source", "distinct_faces", "day") == 2
    # Several sources in one request: the policy sees the largest.
    mixed = (
        await store.reserve(
            by_face_id(4, ("sha256:crowd", "f3"), ("sha256:single", "g1"), officer="o-3")
        )
    ).counts
    assert at(mixed, "source", "distinct_faces", "day") == 3
    assert at(mixed, "source", "distinct_faces", "second") == 1
    assert "source" not in (await store.reserve(event(5))).counts


# -- probes known by their picture (issue 10, detour 9)


async def test_a_probe_is_known_by_its_identity_whatever_its_digest(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    # One picture, three encodings: three digests, identities a bit or two apart.
    encodings = [
        ("sha256:original", "phash:0123456789abcdef"),
        ("sha256:appended", "phash:0123456789abcdef"),
        ("sha256:requality", "phash:0123456789abcdee"),  # the last band flipped a bit
    ]
    for n, (digest, identity) in enumerate(encodings):
        counts = (
            await store.reserve(
                ActivityEvent(
                    request_id=f"r{n}-{uuid.uuid4().hex[:8]}",
                    at=T0,
                    officer="officer-1",
                    agency="Metro PD",
                    case_number=f"C-{n}",
                    kind=OperationKind.IDENTIFY,
                    probe_digests=(digest,),
                    probe_identities=(identity,),
                )
            )
        ).counts
    assert at(counts, "probe", "distinct_cases", "day") == 3
    other = (
        await store.reserve(
            ActivityEvent(
                request_id=f"r9-{uuid.uuid4().hex[:8]}",
                at=T0,
                officer="officer-1",
                agency="Metro PD",
                case_number="C-9",
                kind=OperationKind.IDENTIFY,
                probe_digests=("sha256:other",),
                probe_identities=("phash:f0e1d2c3b4a59687",),  # another face: no band shared
            )
        )
    ).counts
    assert at(other, "probe", "distinct_cases", "day") == 1


# -- window edges, and the memory store's trimming ------------------------------------------

DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)


async def test_the_day_window_ends_exactly_a_day_before_the_request(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    await store.reserve(event(1, at=T0))
    counts = (await store.reserve(event(2, at=T0 + DAY - MS))).counts
    assert at(counts, "officer", "requests", "day") == 2
    # A day after T0 the first request has left the window (and the memory store's set).
    counts = (await store.reserve(event(3, at=T0 + DAY))).counts
    assert at(counts, "officer", "requests", "day") == 2
    assert at(counts, "officer", "requests", "second") == 2
    assert at(counts, "officer", "requests", "ten_seconds") == 2
    counts = (await store.reserve(event(4, at=T0 + DAY + 10 * MS))).counts
    assert at(counts, "agency", "requests", "day") == 3
    assert at(counts, "agency", "requests", "second") == 3


async def test_a_mark_taken_back_after_its_first_score_aged_out_counts_in_no_window(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    await store.reserve(event(1, at=T0, probes=("sha256:p",)))
    later = T0 + DAY + timedelta(seconds=5)
    refused = await store.reserve(event(2, at=later, probes=("sha256:p",)))
    # Both stores read the score the mark had before this request, aged out or not.
    (mark,) = [u for u in refused.undo if u.key == "officer:officer-1:distinct_probes"]
    assert (mark.previous, mark.ours) == (int(T0.timestamp() * 1000), int(later.timestamp() * 1000))
    await store.release(refused)
    counts = (await store.reserve(event(3, at=later + MS, probes=("sha256:q",)))).counts
    assert at(counts, "officer", "distinct_probes", "day") == 1  # q: p's restored score is out
    assert at(counts, "officer", "requests", "day") == 1  # the refused request left no member
    counts = (await store.reserve(event(4, at=later + 2 * MS, probes=("sha256:p",)))).counts
    assert at(counts, "officer", "distinct_probes", "day") == 2
    assert at(counts, "officer", "distinct_probes", "second") == 2


def test_the_memory_store_counts_and_trims_as_a_plain_dict_would() -> None:
    """`_SortedSet` against a model: every count, every score, every previous score, while
    trims leave dead places at its front and drop them in batches; a score restored below
    the dead places (a released mark whose first score has aged out) is counted right too.
    """
    rng = random.Random(20261130)
    members = _SortedSet()
    model: dict[str, int] = {}
    now = 1_000_000
    for step in range(6000):
        now += rng.choice([0, 1, 5, 50, 400])
        until = now - 1000
        member = f"m{rng.randrange(400)}"
        choice = rng.random()
        if choice < 0.6:
            latest = rng.random() < 0.5
            score = now if rng.random() < 0.9 else now - rng.randrange(3000)  # some restored
            expected = model.get(member)
            if not (latest and expected is not None and expected >= score):
                model[member] = score
            assert members.add(member, score, latest=latest) == expected
            if rng.random() < 0.7:  # a release adds without trimming
                members.trim(until)
                model = {m: s for m, s in model.items() if s > until}
                # The dead places kept are at most a quarter of the lists.
                assert members.head * 4 <= len(members.times)
        else:
            members.remove(member)
            model.pop(member, None)
        assert members.scores == model, step
        # The last cut is before the trims': a request whose clock is behind another's.
        since = (now - 1, now - 10, now - 100, now - 1000, now - 1500)
        assert members.counts_after(since) == [
            sum(1 for s in model.values() if s > cut) for cut in since
        ], step
        assert members.newest() == (max(model.values()) if model else None)


async def test_the_memory_store_drops_sets_whose_members_all_aged_out() -> None:
    store = MemoryActivityStore()
    for n in range(20):
        await store.reserve(event(n, at=T0, probes=(f"sha256:old-{n}",)))
    assert [key for key in store._sets if "old-" in key]
    for n in range(_SWEEP_EVERY):
        await store.reserve(event(100 + n, at=T0 + 2 * DAY, probes=("sha256:new",)))
    assert not [key for key in store._sets if "old-" in key]
    assert "probe:sha256:new:distinct_cases" in store._sets


# What facegate.rego reads (policies: its activity_reads), and more windows of a few pairs.
SOME_READS = frozenset(
    {
        ("officer", "requests", "second"),
        ("officer", "requests", "minute"),
        ("agency", "requests", "second"),
        ("agency", "requests", "minute"),
        ("officer", "probes", "ten_seconds"),
        ("case", "probes", "ten_seconds"),
        ("officer", "distinct_cases", "day"),
        ("probe", "distinct_cases", "hour"),
        ("probe", "distinct_cases", "day"),
        ("officer", "enrolments", "day"),
        ("case", "enrolments", "day"),
        ("officer", "distinct_identities", "day"),
        ("case", "distinct_identities", "day"),
        ("source", "distinct_faces", "day"),
    }
)


def restricted(counts: dict[str, Any], reads: frozenset[tuple[str, str, str]]) -> dict[str, Any]:
    """`counts` with only the triples of `reads`, as a policy that reads only them sees it."""
    kept: dict[str, Any] = {}
    for scope, streams in counts.items():
        for stream, windows in streams.items():
            for window, n in windows.items():
                if (scope, stream, window) in reads:
                    kept.setdefault(scope, {}).setdefault(stream, {})[window] = n
    return kept


async def test_a_store_reads_back_only_the_policys_reads_and_counts_the_same(
    new_store: StoreFactory, redis_prefix: str
) -> None:
    # Two stores of one kind, given the same requests: one reads every count back, the
    # other only SOME_READS. Each answer of the second is the first's restricted to them,
    # so what the windows count does not depend on what is read back.
    full = new_store()
    partial: ActivityStore = (
        MemoryActivityStore()
        if isinstance(full, MemoryActivityStore)
        else RedisActivityStore(
            REDIS_URL, key_prefix=redis_prefix + "partial:", timeout_seconds=10.0
        )
    )
    rng = random.Random(17)
    try:
        for n in range(40):
            kind = rng.choice(list(OperationKind))
            request_event = ActivityEvent(
                request_id=f"r{n}",
                at=T0 + timedelta(seconds=rng.choice([0, 1, 5, 30, 600])) * n,
                officer=rng.choice(["officer-1", "officer-2"]),
                agency="Metro PD",
                case_number=rng.choice(["C-1", "C-2", None]),
                kind=kind,
                probe_digests=tuple(
                    rng.sample(["sha256:a", "sha256:b", "sha256:c"], k=rng.randint(0, 2))
                ),
                faces_in_probe=rng.randint(1, 4),
                compared_identities=tuple(rng.sample(["p-1", "p-2", "p-3"], k=rng.randint(0, 2))),
                face_sources=tuple(
                    (rng.choice(["src-1", "src-2"]), str(face)) for face in range(rng.randint(0, 2))
                ),
            )
            every = await full.reserve(request_event)
            some = await partial.reserve(request_event, reads=SOME_READS)
            assert some.counts == restricted(every.counts, SOME_READS), n
            assert some.undo == every.undo, n
            if rng.random() < 0.3:  # refused: both take it back
                await full.release(every)
                await partial.release(some)
    finally:
        if partial is not full:
            await partial.aclose()
        await _drop_keys(redis_prefix + "partial:")
