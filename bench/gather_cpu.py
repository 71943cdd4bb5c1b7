"""CPU of step 3's pieces alone, in process: the activity plan and its counts document, a
memory store's reserve (and release), what a Redis store computes around its one round trip,
and the whole of `gather` with the warrant read answered in memory. Compare two trees by
pointing PYTHONPATH at each, in one run:

    PYTHONPATH=/tmp/before .venv/bin/python bench/gather_cpu.py [-n 1000]
    PYTHONPATH=. .venv/bin/python bench/gather_cpu.py [-n 1000]

The request is the benchmarks' (bench/gateway_latency.py): one officer's SearchFacesByImage
in one case under a warrant, its probe known by its digest. Each figure is the best of 7
runs of n calls, in the thread's own CPU time (a shared machine's preemption is not counted).
The memory store is first given the 5,000 earlier requests of the same officer and case; the
"agency holding a day" row gives an agency's event streams 400,000 members over the last day
and sends requests 1/4.6 s apart, so about one member ages out of each per request.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gateway
from gateway.auth.principals import Principal, Role
from gateway.auth.sessions import BoundSession
from gateway.case import CaseContext, LegalBasis
from gateway.context.activity import (
    ActivityEvent,
    MemoryActivityStore,
    RedisActivityStore,
    Reservation,
    plan,
)
from gateway.context.activity.memory import _SortedSet
from gateway.context.face_sources import MemoryFaceSourceStore
from gateway.context.gather import gather
from gateway.db import RequestReader
from gateway.operations import FaceOperation, OperationKind

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """A coroutine that never suspends, run to its end without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def event(n: int, *, officer: str = "bench", case: str | None = "BENCH-1") -> ActivityEvent:
    return ActivityEvent(
        request_id=uuid.uuid4().hex,
        at=T0 + timedelta(milliseconds=20 * n),
        officer=officer,
        agency="Bench PD",
        case_number=case,
        kind=OperationKind.IDENTIFY,
        probe_digests=(DIGEST,),
    )


def best_us(label: str, call: Callable[[int], object], n: int) -> None:
    import time

    runs = []
    for r in range(7):
        started = time.thread_time()
        for i in range(n):
            call(r * n + i)
        runs.append((time.thread_time() - started) / n * 1e6)
    print(f"{label:46s} {min(runs):8.1f} us")


class _Warrants(RequestReader):
    """The warrant registry's row, as asyncpg hands it, without a database."""

    def __init__(self) -> None:
        self._row = {
            "id": "W-BENCH",
            "kind": "warrant",
            "issuing_court": "Bench Court",
            "case_number": "BENCH-1",
            "operations": '["identify"]',
            "collections": '["mugshots"]',
            "realtime": False,
            "valid_from": T0 - timedelta(days=1),
            "valid_until": T0 + timedelta(days=2),
            "revoked_at": None,
            "agency": "Bench PD",
            "officers": "[]",
            "created_by": "bench-admin",
        }

    @property
    def on_asyncpg(self) -> bool:
        return True

    async def fetchrow(self, query: str, *args: object) -> Any:
        return tuple(self._row.values())  # a Record reads by position, as a tuple does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="calls per run")
    n = parser.parse_args().n
    print(f"gateway from {Path(gateway.__file__).parent.parent}, {n} calls a run")
    events = [event(i) for i in range(7 * n)]

    best_us("plan", lambda i: plan(events[i]), n)
    steps = plan(events[0])
    results = [[1, 2, 3, 4, 5] for _ in steps.reads]
    best_us("Plan.counts", lambda i: steps.counts(results), n)

    memory = MemoryActivityStore()
    for i in range(5000):
        run(memory.reserve(event(i - 6000)))
    best_us("memory reserve", lambda i: run(memory.reserve(events[i])), n)
    later = [event(i + 7 * n) for i in range(7 * n)]

    def reserve_release(i: int) -> None:
        reservation: Reservation = run(memory.reserve(later[i]))
        run(memory.release(reservation))

    best_us("memory reserve + release", reserve_release, n)

    redis = RedisActivityStore("redis://127.0.0.1:1/0")  # never connected

    async def answer(script: Any, keys: list[str], document: Any) -> Any:
        import json

        json.dumps(document)  # as the call would
        return [[[1, 1, 1, 1, 1]] * len(document["reads"]), [-1] * len(document["adds"])]

    redis._call = answer  # type: ignore[method-assign]
    best_us("redis reserve, without its round trip", lambda i: run(redis.reserve(events[i])), n)

    day_full(n)
    whole(n)


def day_full(n: int) -> None:
    members, step = 400_000, 86_400_000 // 400_000
    store = MemoryActivityStore()
    first = int((T0 - timedelta(days=1)).timestamp() * 1000)
    for key, _, latest in plan(event(0, case=None)).adds:
        if key.startswith("agency:") and not latest:
            kept = store._sets[key] = _SortedSet()
            kept.order = [(first + i * step, f"old{i}:0") for i in range(members)]
            kept.times = [score for score, _ in kept.order]
            kept.scores = {member: score for score, member in kept.order}
    events = [
        ActivityEvent(
            request_id=uuid.uuid4().hex,
            at=T0 + timedelta(milliseconds=step * (i + 1)),
            officer=f"officer-{i % 50}",
            agency="Bench PD",
            case_number=None,
            kind=OperationKind.IDENTIFY,
            probe_digests=(DIGEST,),
        )
        for i in range(7 * n)
    ]
    best_us("memory reserve, agency holding 400k a day", lambda i: run(store.reserve(events[i])), n)


def whole(n: int) -> None:
    principal = Principal(id="bench", name="Bench", agency="Bench PD", roles=(Role.OFFICER,))
    session = BoundSession(
        access_key_id="bench-key",
        principal=principal,
        context=CaseContext(
            purpose="criminal_investigation",
            case_number="BENCH-1",
            offense="homicide",
            legal_basis=LegalBasis.WARRANT,
            warrant_id="W-BENCH",
        ),
        expires_at=T0 + timedelta(days=1),
        revoked=False,
    )
    operation = FaceOperation(
        vendor="rekognition",
        name="SearchFacesByImage",
        kind=OperationKind.IDENTIFY,
        collection="mugshots",
        threshold=80.0,
        probe_digests=[DIGEST],
    )
    reads, faces, activity = _Warrants(), MemoryFaceSourceStore(), MemoryActivityStore()
    headers = {"x-amz-target": "RekognitionService.SearchFacesByImage"}

    def one(i: int) -> None:
        run(
            gather(
                reads=reads,
                session=session,
                operation=operation,
                images=(),
                probe_faces=(),
                target_faces=(),
                headers=headers,
                request_id=uuid.uuid4().hex,
                now=T0 + timedelta(milliseconds=20 * i),
                vendor=None,
                face_sources=faces,
                activity=activity,
            )
        )

    for i in range(5000):
        one(i - 6000)
    best_us("gather, warrant read answered in memory", one, n)


if __name__ == "__main__":
    main()
