"""The face-source store on both backends (Redis at 127.0.0.1:6379 for real), and the
functions that decide what is remembered and what a request is judged by."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis_asyncio

from gateway.context.face_sources import (
    FaceSourceStore,
    FaceSourcesUnavailable,
    IssuedFaces,
    MemoryFaceSourceStore,
    RedisFaceSourceStore,
    SourceRecord,
    source_identity,
    sources_of,
    with_face_sources,
)
from gateway.operations import FaceOperation, OperationKind
from tests.conftest import REDIS_URL

CROWD = SourceRecord(source="sha256:crowd", faces_in_source=8)


StoreFactory = Callable[[], FaceSourceStore]


@pytest.fixture(params=["memory", "redis"])
async def new_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[StoreFactory]:
    """Makes stores that share one state: one process's store, or clients of one Redis."""
    made: list[FaceSourceStore] = []
    memory = MemoryFaceSourceStore()

    def make() -> FaceSourceStore:
        store: FaceSourceStore = (
            memory
            if request.param == "memory"
            else RedisFaceSourceStore(REDIS_URL, key_prefix=redis_prefix)
        )
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


async def test_a_remembered_face_is_found_by_every_client(new_store: StoreFactory) -> None:
    writer, reader = new_store(), new_store()
    await writer.remember({"rekognition:face:f1": CROWD, "rekognition:face:f2": CROWD})

    found = await reader.lookup(["rekognition:face:f2", "rekognition:face:never", "azure:face:f1"])

    assert found == {"rekognition:face:f2": CROWD}
    assert await reader.lookup([]) == {}


async def test_remembering_again_replaces_the_source(new_store: StoreFactory) -> None:
    store = new_store()
    await store.remember({"azure:face:a": CROWD})
    single = SourceRecord(source="sha256:one", faces_in_source=1)
    await store.remember({"azure:face:a": single})
    assert await store.lookup(["azure:face:a"]) == {"azure:face:a": single}


async def test_memory_entries_expire_after_the_ttl() -> None:
    now = [1000.0]
    store = MemoryFaceSourceStore(ttl_seconds=60, clock=lambda: now[0])
    await store.remember({"azure:face:a": CROWD})
    now[0] += 59
    assert await store.lookup(["azure:face:a"]) == {"azure:face:a": CROWD}
    now[0] += 1
    assert await store.lookup(["azure:face:a"]) == {}


async def test_memory_keeps_the_newest_entries_within_its_limit() -> None:
    store = MemoryFaceSourceStore(limit=2)
    for face in ("a", "b", "c"):
        await store.remember({face: CROWD})
    assert set(await store.lookup(["a", "b", "c"])) == {"b", "c"}


async def test_redis_entries_carry_the_ttl_and_no_more_than_a_digest_and_a_count(
    redis_prefix: str,
) -> None:
    store = RedisFaceSourceStore(REDIS_URL, key_prefix=redis_prefix, ttl_seconds=60)
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await store.remember({"azure:face:a": CROWD})
        ttl = await client.pttl(redis_prefix + "azure:face:a")
        value = json.loads(await client.get(redis_prefix + "azure:face:a"))
        assert 0 < ttl <= 60_000
        assert value == {"source": "sha256:crowd", "faces": 8, "index": 0}
        # An entry facegate cannot read vouches for nothing.
        await client.set(redis_prefix + "azure:face:bad", b"not json")
        assert await store.lookup(["azure:face:bad", "azure:face:a"]) == {"azure:face:a": CROWD}
    finally:
        await client.aclose()
        await store.aclose()


async def test_an_unreachable_redis_is_reported() -> None:
    store = RedisFaceSourceStore("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    try:
        with pytest.raises(FaceSourcesUnavailable):
            await store.remember({"azure:face:a": CROWD})
        with pytest.raises(FaceSourcesUnavailable):
            await store.lookup(["azure:face:a"])
    finally:
        await store.aclose()


def _operation(**fields: object) -> FaceOperation:
    defaults: dict[str, object] = {
        "vendor": "rekognition",
        "name": "IndexFaces",
        "kind": OperationKind.ENROLL,
        "probe_digests": ["sha256:crowd"],
    }
    return FaceOperation.model_validate(defaults | fields)


def test_the_source_is_the_first_probe() -> None:
    assert source_identity(_operation(probe_digests=["sha256:a", "sha256:b"])) == "sha256:a"
    assert source_identity(_operation(probe_digests=[])) is None


def test_an_inspected_source_is_known_by_its_picture_not_its_bytes() -> None:
    """The same crowd photo re-encoded is one source: its perceptual identity, not its digest."""
    images = [
        {"role": "probe", "digest": "sha256:a", "identity": "phash:00ff00ff00ff00ff", "faces": 6}
    ]
    operation = _operation(probe_digests=["sha256:a"], images=images)
    assert source_identity(operation) == "phash:00ff00ff00ff00ff"
    reencoded = _operation(probe_digests=["sha256:b"], images=[images[0] | {"digest": "sha256:b"}])
    assert source_identity(reencoded) == source_identity(operation)


def test_faces_in_the_source_are_the_larger_of_the_gateways_count_and_the_vendors() -> None:
    issued = IssuedFaces(face_ids=("x:1", "x:2"), faces_in_answer=5)
    # The vendor found 5 faces (enrolling 2); the gateway counted 8: a crowd of 8.
    assert sources_of(_operation(faces_in_probe=8), issued) == {
        "x:1": SourceRecord("sha256:crowd", 8, index=0),
        "x:2": SourceRecord("sha256:crowd", 8, index=1),
    }
    # The gateway saw none (a 110 px face in a large frame); the vendor's 5 stand.
    assert sources_of(_operation(faces_in_probe=0), issued)["x:1"].faces_in_source == 5
    assert sources_of(_operation(faces_in_probe=None), issued)["x:2"].faces_in_source == 5
    assert sources_of(_operation(probe_digests=[]), issued) == {}


async def test_named_faces_get_their_sources_and_probes_their_images() -> None:
    store = MemoryFaceSourceStore()
    await store.remember(
        {"azure:face:p": SourceRecord("sha256:crowd", 8, index=5), "azure:face:t": CROWD}
    )
    operation = _operation(name="FindSimilar", kind=OperationKind.IDENTIFY, probe_digests=[])

    gathered = await with_face_sources(
        operation,
        store=store,
        probe_faces=["azure:face:p"],
        target_faces=["azure:face:t", "azure:face:unknown"],
    )

    assert [
        (f.face, f.probe, f.source, f.faces_in_source, f.index_in_source)
        for f in gathered.face_sources
    ] == [
        ("azure:face:p", True, "sha256:crowd", 8, 5),
        ("azure:face:t", False, "sha256:crowd", 8, 0),
        ("azure:face:unknown", False, None, None, None),
    ]
    # The probe face's image is a probe of the request; a target's is not.
    assert gathered.probe_digests == ["sha256:crowd"]
    unchanged = await with_face_sources(operation, store=store, probe_faces=[], target_faces=[])
    assert unchanged is operation
