"""Where every face a vendor handed out came from, so that searching it later is judged by it.

A vendor answer can hand a caller an id for each face it found: Rekognition IndexFaces'
`FaceRecords[].Face.FaceId`, Azure Detect's `faceId` and AddPersonFace's `persistedFaceId`,
CompreFace AddExample's `image_id`. A later request may name those faces instead of sending
an image (SearchFaces by FaceId, Azure identify/verify/findsimilar, CompreFace verification
of an example), and then the probe inspection sees no image at all. So when an answer hands
out face ids (step 7 of the pipeline), each is remembered with its source: the identity of
the image it was found in and how many faces that image held. When a request names faces by
id, step 3 looks them up (`with_face_sources`) and the policy sees `operation.face_sources`:
a face from a crowd photo is a crowd scan however few are searched at once, and the faces of
one source searched one by one are counted (activity stream `distinct_faces` per source).

A face id facegate never saw come back (enrolled around the gateway, or older than the TTL)
has an unknown source: the policy refuses identification by it (`face_source_unknown`).

Ids are namespaced by vendor ("rekognition:face:<FaceId>", "azure:face:<faceId>", ...) so
that one vendor's id can never stand for another's. Only ids, digests and counts are kept,
never an image or a template.

Two stores, as for the activity windows: `MemoryFaceSourceStore`, the embedded default (one
process, lost on restart), and `RedisFaceSourceStore`, which every replica shares. Entries
live 24 hours, as long as Azure keeps a faceId.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import ServiceUnavailable
from gateway.operations import FaceOperation, FaceSource

TTL_SECONDS = 24 * 3600  # Azure keeps a detected faceId for 24 hours at most
MEMORY_LIMIT = 1_000_000  # entries the in-memory store keeps; the oldest go first


@dataclass(frozen=True)
class IssuedFaces:
    """The face ids one vendor answer handed out, and how many faces the vendor found."""

    face_ids: tuple[str, ...]  # namespaced, e.g. "rekognition:face:<FaceId>"; answer order
    faces_in_answer: int  # faces the vendor found in the image (enrolled or not)


@dataclass(frozen=True)
class SourceRecord:
    source: str  # the source image's identity (see source_identity)
    faces_in_source: int
    # The face's place in the vendor's answer for that image (largest first). The same photo
    # detected again hands out new ids for the same faces: counted by place, a suspect's
    # photo detected five times is one face of its source, not five.
    index: int = 0


def source_identity(operation: FaceOperation) -> str | None:
    """The identity of the image an operation's faces came from.

    The perceptual identity of its first image (`gateway.context.identity`), so the same
    crowd photo re-encoded, or with a byte appended, is one source however often it is
    detected; its SHA-256 digest where the image was not inspected. This is the one place
    that says so.
    """
    for image in operation.images:
        if image.identity:
            return image.identity
    return operation.probe_digests[0] if operation.probe_digests else None


def sources_of(operation: FaceOperation, issued: IssuedFaces) -> dict[str, SourceRecord]:
    """What to remember for the faces one answer handed out.

    The faces in the source are the larger of the gateway's own count of the probe and the
    vendor's: a crowd either one sees is a crowd.
    """
    source = source_identity(operation)
    if source is None or not issued.face_ids:
        return {}
    faces = max(operation.faces_in_probe or 0, issued.faces_in_answer, len(issued.face_ids))
    return {
        face_id: SourceRecord(source=source, faces_in_source=faces, index=index)
        for index, face_id in enumerate(issued.face_ids)
    }


class FaceSourcesUnavailable(ServiceUnavailable):
    """The face-source store could not be read or written."""


class FaceSourceStore(Protocol):
    """Face id -> source, shared by whoever shares the store; each entry lives `ttl_seconds`.

    When `remember` returns, every entry is written (visible to every `lookup` on the store).
    `lookup` returns the entries it holds for the ids asked, leaving out unknown or expired
    ones. Both raise `FaceSourcesUnavailable` when the store cannot be reached: the pipeline
    then refuses the request (a lookup) or withholds the answer (a remember), fail closed.
    """

    name: str

    async def remember(self, sources: Mapping[str, SourceRecord]) -> None: ...

    async def lookup(self, face_ids: Sequence[str]) -> dict[str, SourceRecord]: ...

    async def aclose(self) -> None: ...


class MemoryFaceSourceStore:
    """The embedded default: one process's memory, lost on restart.

    With several replicas a face detected through one would be unknown to the others (and so
    refused for identification there): configure Redis for those.
    """

    name = "memory"

    def __init__(
        self,
        *,
        ttl_seconds: float = TTL_SECONDS,
        limit: int = MEMORY_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._limit = limit
        self._clock = clock
        # face id -> (record, when remembered), oldest first
        self._entries: OrderedDict[str, tuple[SourceRecord, float]] = OrderedDict()
        self._lock = threading.Lock()

    async def remember(self, sources: Mapping[str, SourceRecord]) -> None:
        now = self._clock()
        with self._lock:
            for face_id, record in sources.items():
                self._entries[face_id] = (record, now)
                self._entries.move_to_end(face_id)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    async def lookup(self, face_ids: Sequence[str]) -> dict[str, SourceRecord]:
        now = self._clock()
        found = {}
        with self._lock:
            for face_id in face_ids:
                entry = self._entries.get(face_id)
                if entry is not None and now - entry[1] < self._ttl:
                    found[face_id] = entry[0]
        return found

    async def aclose(self) -> None:
        return None


class RedisFaceSourceStore:
    """Entries every replica shares: one Redis string per face id, expiring after the TTL.

    Keys are `<prefix><face id>`; values are JSON {"source", "faces", "index"}: a digest and
    two numbers.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "facegate:face-sources:",
        ttl_seconds: float = TTL_SECONDS,
        timeout_seconds: float = 1.0,
    ) -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = key_prefix
        self._ttl_ms = int(ttl_seconds * 1000)

    async def remember(self, sources: Mapping[str, SourceRecord]) -> None:
        if not sources:
            return
        from redis.exceptions import RedisError

        # One transaction: the answer is handed out only once every id in it is recorded.
        pipe = self._redis.pipeline(transaction=True)
        for face_id, record in sources.items():
            value = json.dumps(
                {"source": record.source, "faces": record.faces_in_source, "index": record.index}
            )
            pipe.set(self._prefix + face_id, value, px=self._ttl_ms)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise FaceSourcesUnavailable(f"Redis: {type(exc).__name__}") from exc

    async def lookup(self, face_ids: Sequence[str]) -> dict[str, SourceRecord]:
        if not face_ids:
            return {}
        from redis.exceptions import RedisError

        try:
            values = await self._redis.mget([self._prefix + f for f in face_ids])
        except (RedisError, OSError) as exc:
            raise FaceSourcesUnavailable(f"Redis: {type(exc).__name__}") from exc
        found = {}
        for face_id, value in zip(face_ids, values, strict=True):
            if value is None:
                continue
            try:
                document: Any = json.loads(value)
                found[face_id] = SourceRecord(
                    source=str(document["source"]),
                    faces_in_source=int(document["faces"]),
                    index=int(document["index"]),
                )
            except (ValueError, KeyError, TypeError):
                continue  # an entry facegate cannot read vouches for nothing: unknown
        return found

    async def aclose(self) -> None:
        await self._redis.aclose()


async def with_face_sources(
    operation: FaceOperation,
    *,
    store: FaceSourceStore,
    probe_faces: Sequence[str],
    target_faces: Sequence[str],
) -> FaceOperation:
    """The operation with `face_sources` for every face it names by id.

    A probe face's source image also becomes one of the operation's probes, so the probe
    rules (burst, probe_across_cases) count the image the face came from, and the audit log
    records it.
    """
    if not probe_faces and not target_faces:
        return operation
    known = await store.lookup([*probe_faces, *target_faces])
    sources = []
    digests = list(operation.probe_digests)
    for faces, probe in ((probe_faces, True), (target_faces, False)):
        for face_id in faces:
            record = known.get(face_id)
            sources.append(
                FaceSource(
                    face=face_id,
                    probe=probe,
                    source=record.source if record else None,
                    faces_in_source=record.faces_in_source if record else None,
                    index_in_source=record.index if record else None,
                )
            )
            if probe and record is not None:
                digests.append(record.source)
    return operation.model_copy(update={"face_sources": sources, "probe_digests": digests})
