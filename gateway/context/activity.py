"""Activity windows: what an officer, an agency, a case and a probe have done lately.

A single search can be lawful while the pattern of many is surveillance, so the policy sees
sliding-window counts beside each request:

    activity = {
      "officer": {<stream>: {<window>: n, ...}, ...},   # the principal making the call
      "agency":  {...},                                 # everyone in the principal's agency
      "case":    {...},                                 # this case (absent without one)
      "probe":   {"distinct_cases": {<window>: n}},     # the most cases any probe of this
    }                                                   #   request was searched under

    streams: requests (every vendor call), probes (images sent), identifications,
             enrolments (faces sent to IndexFaces), distinct_cases (cases identified in;
             officer and agency), distinct_probes (distinct probe digests)
    windows: second, ten_seconds, minute, hour, day (sliding, ending at the request)

**The counts include the request being decided**, as if it were allowed, so a limit reads
naturally in the policy ("more than 5 probes in ten seconds" is `> 5`).

**Only allowed requests stay counted.** `reserve` records the request and returns the counts
in one atomic step (one lock in process; one Lua script in Redis), so two replicas deciding
at once cannot both slip under a limit. The pipeline then `release`s the reservation when
the request is refused or fails before it is forwarded. Between the two, concurrent requests
see a count one higher than they will later: the error is on the side of refusing. A release
that fails (Redis gone) leaves the request counted until it ages out of the day window, again
on the side of refusing.

Two implementations: `MemoryActivityStore`, the embedded default (one process; counts are lost
on restart), and `RedisActivityStore`, which every replica shares. Both keep sorted sets of
(time, member) per key and trim what is older than the longest window.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gateway.operations import OperationKind

WINDOWS: dict[str, int] = {  # name -> length in seconds
    "second": 1,
    "ten_seconds": 10,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
}
RETENTION_MS = max(WINDOWS.values()) * 1000
EVENT_STREAMS = ("requests", "probes", "identifications", "enrolments")

_SWEEP_EVERY = 1024  # reserves between sweeps of the in-memory store
_DISTINCT_SEPARATOR = "|"  # distinct members are "<value>|<request id>:<n>"


@dataclass(frozen=True)
class ActivityEvent:
    """One request as the windows count it. Digests only: no image, no template."""

    request_id: str
    at: datetime
    officer: str
    agency: str
    case_number: str | None
    kind: OperationKind
    probe_digests: tuple[str, ...] = ()
    faces_in_probe: int | None = None


@dataclass(frozen=True)
class _Add:
    key: str
    member: str


@dataclass(frozen=True)
class _Query:
    path: tuple[str, str, str]  # (scope, stream, window) in the counts document
    key: str
    since_ms: int  # counts members with a time after this
    distinct: bool


@dataclass(frozen=True)
class Plan:
    """What one event adds, and which counts it reads back: pure, shared by every store."""

    now_ms: int
    adds: tuple[_Add, ...]
    queries: tuple[_Query, ...]

    def counts(self, results: Iterable[int]) -> dict[str, Any]:
        """The counts document from one result per query, in query order."""
        document: dict[str, Any] = {}
        for query, value in zip(self.queries, results, strict=True):
            scope, stream, window = query.path
            windows = document.setdefault(scope, {}).setdefault(stream, {})
            # Several probe keys answer one path: the policy sees the largest.
            windows[window] = max(windows.get(window, 0), int(value))
        return document


def _case_id(agency: str, case_number: str) -> str:
    # Case numbers are per agency; the key is opaque so that neither may forge the other.
    return hashlib.sha256(json.dumps([agency, case_number]).encode()).hexdigest()[:32]


def plan(event: ActivityEvent) -> Plan:
    now_ms = int(event.at.timestamp() * 1000)
    scopes = {"officer": f"officer:{event.officer}", "agency": f"agency:{event.agency}"}
    if event.case_number:
        scopes["case"] = f"case:{_case_id(event.agency, event.case_number)}"

    per_stream = {
        "requests": 1,
        "probes": len(event.probe_digests),
        "identifications": 1 if event.kind == OperationKind.IDENTIFY else 0,
        # A crowd photo sent to IndexFaces enrols every face in it.
        "enrolments": (
            (event.faces_in_probe if event.faces_in_probe is not None else 1)
            if event.kind == OperationKind.ENROLL
            else 0
        ),
    }
    adds: list[_Add] = []
    for prefix in scopes.values():
        for stream, n in per_stream.items():
            adds += [_Add(f"{prefix}:{stream}", f"{event.request_id}:{i}") for i in range(n)]

    def distinct(key: str, values: Iterable[str]) -> None:
        for i, value in enumerate(values):
            adds.append(_Add(key, f"{value}{_DISTINCT_SEPARATOR}{event.request_id}:{i}"))

    identifies_in_case = event.kind == OperationKind.IDENTIFY and event.case_number
    case_value = json.dumps([event.agency, event.case_number])
    distinct_streams = {"distinct_probes": list(scopes)}
    distinct_streams["distinct_cases"] = ["officer", "agency"]
    for scope, prefix in scopes.items():
        distinct(f"{prefix}:distinct_probes", event.probe_digests)
        if identifies_in_case and scope in ("officer", "agency"):
            distinct(f"{prefix}:distinct_cases", [case_value])
    if identifies_in_case:
        for digest in event.probe_digests:
            distinct(f"probe:{digest}:distinct_cases", [case_value])

    queries: list[_Query] = []
    for window, seconds in WINDOWS.items():
        since = now_ms - seconds * 1000
        for scope, prefix in scopes.items():
            for stream in EVENT_STREAMS:
                queries.append(_Query((scope, stream, window), f"{prefix}:{stream}", since, False))
            for stream, distinct_scopes in distinct_streams.items():
                if scope in distinct_scopes:
                    queries.append(
                        _Query((scope, stream, window), f"{prefix}:{stream}", since, True)
                    )
        for digest in event.probe_digests:
            queries.append(
                _Query(
                    ("probe", "distinct_cases", window),
                    f"probe:{digest}:distinct_cases",
                    since,
                    True,
                )
            )
    return Plan(now_ms=now_ms, adds=tuple(adds), queries=tuple(queries))


@dataclass(frozen=True)
class Reservation:
    """A request counted provisionally: its counts, and what to take back if it is refused."""

    counts: dict[str, Any]
    added: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (key, member)


class ActivityStore(Protocol):
    """Sliding-window counts, shared by whoever shares the store.

    `reserve` counts the event and returns the counts including it, atomically with respect
    to every other `reserve` on the same store. `release` takes a reservation back; it is
    idempotent. Both raise `ActivityUnavailable` when the store cannot be reached, and the
    pipeline then refuses the request (fail closed).
    """

    name: str

    async def reserve(self, event: ActivityEvent) -> Reservation: ...

    async def release(self, reservation: Reservation) -> None: ...

    async def aclose(self) -> None: ...


class ActivityUnavailable(Exception):
    """The activity store could not be read or written."""


def _distinct_value(member: str) -> str:
    return member.rsplit(_DISTINCT_SEPARATOR, 1)[0]


class MemoryActivityStore:
    """The embedded default: one process's counts, in memory, lost on restart.

    With several replicas each would count only what it saw, so limits would multiply by the
    number of replicas: configure Redis for those.
    """

    name = "memory"

    def __init__(self) -> None:
        # key -> [(time ms, member)] sorted by time, and the members present
        self._sets: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.Lock()  # held only for in-memory work, never across an await
        self._reserves = 0

    async def reserve(self, event: ActivityEvent) -> Reservation:
        steps = plan(event)
        with self._lock:
            self._reserves += 1
            if self._reserves % _SWEEP_EVERY == 0:
                self._sweep(steps.now_ms)
            for add in steps.adds:
                entries = self._sets.setdefault(add.key, [])
                bisect.insort(entries, (steps.now_ms, add.member))
                cutoff = bisect.bisect_right(entries, (steps.now_ms - RETENTION_MS, "\uffff"))
                del entries[:cutoff]
            results = [self._count(q) for q in steps.queries]
        return Reservation(
            counts=steps.counts(results), added=tuple((a.key, a.member) for a in steps.adds)
        )

    def _sweep(self, now_ms: int) -> None:
        # Keys are trimmed when written; a key nobody writes again (one probe's digest) is
        # dropped here once its newest entry has aged out, so memory stays bounded.
        cutoff = now_ms - RETENTION_MS
        for key in [
            k for k, entries in self._sets.items() if not entries or entries[-1][0] <= cutoff
        ]:
            del self._sets[key]

    def _count(self, query: _Query) -> int:
        entries = self._sets.get(query.key, [])
        start = bisect.bisect_right(entries, (query.since_ms, "\uffff"))
        if not query.distinct:
            return len(entries) - start
        return len({_distinct_value(member) for _, member in entries[start:]})

    async def release(self, reservation: Reservation) -> None:
        with self._lock:
            for key, member in reservation.added:
                entries = self._sets.get(key)
                if entries:
                    self._sets[key] = [e for e in entries if e[1] != member]

    async def aclose(self) -> None:
        return None


# One round trip, atomic: Redis runs a script to completion before any other command.
# ARGV[1] is the plan as JSON: {"now", "retention", "adds": [[key index, member]],
# "queries": [[key index, since, distinct]]}; KEYS holds every key it names (1-based).
_RESERVE_LUA = """
local plan = cjson.decode(ARGV[1])
local touched = {}
for _, add in ipairs(plan.adds) do
  local key = KEYS[add[1]]
  redis.call('ZADD', key, plan.now, add[2])
  touched[key] = true
end
for key, _ in pairs(touched) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', plan.now - plan.retention)
  redis.call('PEXPIRE', key, plan.retention + 60000)
end
local results = {}
for i, q in ipairs(plan.queries) do
  local key = KEYS[q[1]]
  local since = '(' .. q[2]
  if q[3] then
    local seen, n = {}, 0
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, since, '+inf')) do
      local value = string.match(member, '^(.*)|[^|]*$') or member
      if not seen[value] then seen[value] = true; n = n + 1 end
    end
    results[i] = n
  else
    results[i] = redis.call('ZCOUNT', key, since, '+inf')
  end
end
return results
"""


class RedisActivityStore:
    """Counts every replica shares, in Redis sorted sets (score: time in ms).

    Keys are `<prefix><scope>:<id>:<stream>`; each expires a minute after the longest window
    has passed since its last write. Members name request ids and probe digests, never images.
    """

    name = "redis"

    def __init__(
        self, url: str, *, key_prefix: str = "facegate:activity:", timeout_seconds: float = 1.0
    ) -> None:
        # Imported here so that a gateway without Redis never needs the client loaded.
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = key_prefix
        self._script = self._redis.register_script(_RESERVE_LUA)

    async def reserve(self, event: ActivityEvent) -> Reservation:
        from redis.exceptions import RedisError

        steps = plan(event)
        keys: list[str] = []
        index: dict[str, int] = {}

        def key_index(key: str) -> int:
            if key not in index:
                keys.append(self._prefix + key)
                index[key] = len(keys)  # Lua's KEYS is 1-based
            return index[key]

        document = {
            "now": steps.now_ms,
            "retention": RETENTION_MS,
            "adds": [[key_index(a.key), a.member] for a in steps.adds],
            "queries": [[key_index(q.key), q.since_ms, q.distinct] for q in steps.queries],
        }
        try:
            results = await self._script(keys=keys, args=[json.dumps(document)])
        except (RedisError, OSError) as exc:
            raise ActivityUnavailable(f"Redis: {type(exc).__name__}") from exc
        return Reservation(
            counts=steps.counts(results),
            added=tuple((self._prefix + a.key, a.member) for a in steps.adds),
        )

    async def release(self, reservation: Reservation) -> None:
        from redis.exceptions import RedisError

        if not reservation.added:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, member in reservation.added:
                    pipe.zrem(key, member)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise ActivityUnavailable(f"Redis: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
