"""Activity windows: what an officer, an agency, a case and a probe have done lately.

A single search can be lawful while the pattern of many is surveillance, so the policy sees
sliding-window counts beside each request:

    activity = {
      "officer": {<stream>: {<window>: n, ...}, ...},   # the principal making the call
      "agency":  {...},                                 # everyone in the principal's agency
      "case":    {...},                                 # this case (absent without one)
      "probe":   {"distinct_cases": {<window>: n}},     # the most cases any probe of this
                                                        #   request was searched under, a
                                                        #   probe known by its picture
      "source":  {"distinct_faces": {<window>: n}},     # the most faces of one source image
    }                                                   #   named by id (face_sources.py)

    streams: requests (every vendor call), probes (images sent), identifications,
             enrolments (faces sent to enrolment, or as many as the vendor says it
             enrolled when that is more), distinct_cases (cases identified in, or
             compared stored identities in; officer and agency), distinct_probes
             (distinct probe identities: the perceptual identity of each image, its
             digest where none was taken), distinct_identities (stored identities
             compared one by one, e.g. persons verified against; officer and case)
    windows: second, ten_seconds, minute, hour, day (sliding, ending at the request)

**The counts include the request being decided**, as if it were allowed, so a limit reads
naturally in the policy ("more than 5 probes in ten seconds" is `> 5`).

**What the vendor did is counted too.** After an enrolment, `record_after` adds the faces
the vendor says it enrolled to `enrolments`, beside the faces step 3 counted in the image:
members are named alike, so the window holds the larger of the two, never their sum.

**Only allowed requests stay counted.** `reserve` records the request and returns the counts
in one atomic step (one lock in process; one Lua script in Redis), so two replicas deciding
at once cannot both slip under a limit. The pipeline then `release`s the reservation when
the request is refused or fails before it is forwarded. Between the two, concurrent requests
see a count one higher than they will later: the error is on the side of refusing. A release
that fails (Redis gone) leaves the request counted until it ages out of the day window, again
on the side of refusing.

Two implementations: `MemoryActivityStore`, the embedded default (one process; counts are lost
on restart), and `RedisActivityStore`, which every replica shares. Both keep sorted sets
scored by time in ms, trimmed to the longest window, so every count is one range count:

- event streams (requests, probes, ...): one member per thing counted, "<request id>:<n>";
- distinct streams: one member per value (a case, a probe digest) scored by when it was
  last seen, so "distinct cases in the last day" counts members seen since a day ago.

Taking back a distinct mark restores the score it had before, unless a later request has
moved it on since (then that request's time stands). If that later request is itself taken
back, it restores the refused request's time: again an error towards refusing.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gateway.context.identity import identity_keys
from gateway.errors import ServiceUnavailable
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
    # Stored identities compared one by one (FaceOperation.compared_identities).
    compared_identities: tuple[str, ...] = ()
    # (source image identity, the face's place in it) of each face named by id whose source
    # is known: distinct faces of one image, however often it was detected.
    face_sources: tuple[tuple[str, str], ...] = ()
    # The perceptual identity of each image inspected (gateway.context.identity); when
    # given, probes are known by these rather than by their digests.
    probe_identities: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Add:
    key: str
    member: str
    latest: bool  # a distinct value: its score becomes the later of its old one and now


@dataclass(frozen=True)
class _Query:
    path: tuple[str, str, str]  # (scope, stream, window) in the counts document
    key: str
    since_ms: int  # counts members scored after this


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


def _scopes(event: ActivityEvent) -> dict[str, str]:
    scopes = {"officer": f"officer:{event.officer}", "agency": f"agency:{event.agency}"}
    if event.case_number:
        scopes["case"] = f"case:{_case_id(event.agency, event.case_number)}"
    return scopes


# Most members one after-the-fact count adds: far past any limit a policy sets, and it keeps
# one Redis call bounded whatever number a vendor's answer claims.
MAX_RECORDED_AFTER = 10_000


def plan_after(event: ActivityEvent, *, stream: str, count: int) -> tuple[_Add, ...]:
    """The members an after-the-fact count adds: "<request id>:<n>" for n below `count`, in
    every scope of the event. The reservation added "<request id>:0".. for what it counted,
    so a member both add is counted once: the stream keeps the larger of the two counts."""
    if stream not in EVENT_STREAMS:
        raise ValueError(f"{stream!r} is not an event stream")
    count = max(0, min(count, MAX_RECORDED_AFTER))
    return tuple(
        _Add(f"{prefix}:{stream}", f"{event.request_id}:{i}", latest=False)
        for prefix in _scopes(event).values()
        for i in range(count)
    )


def plan(event: ActivityEvent) -> Plan:
    now_ms = int(event.at.timestamp() * 1000)
    scopes = _scopes(event)

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
            adds += [
                _Add(f"{prefix}:{stream}", f"{event.request_id}:{i}", latest=False)
                for i in range(n)
            ]

    # A comparison against stored identities is a search of the reference data, whatever
    # the policy later calls it: it marks the case for the sweep rules as a 1:N search does.
    searches = event.kind == OperationKind.IDENTIFY or bool(event.compared_identities)
    identifies_in_case = searches and event.case_number
    case_value = json.dumps([event.agency, event.case_number])
    # A probe is known by its picture, not its bytes: the same face appended to or
    # re-encoded is the same probe. Its identity's band keys are each a probe key; the
    # policy sees the largest count any of them holds (Plan.counts).
    probes = event.probe_identities or event.probe_digests
    probe_keys = [key for probe in probes for key in identity_keys(probe)]
    for scope, prefix in scopes.items():
        adds += [_Add(f"{prefix}:distinct_probes", p, latest=True) for p in probes]
        if identifies_in_case and scope in ("officer", "agency"):
            adds.append(_Add(f"{prefix}:distinct_cases", case_value, latest=True))
        if scope in ("officer", "case"):
            adds += [
                _Add(f"{prefix}:distinct_identities", identity, latest=True)
                for identity in event.compared_identities
            ]
    if identifies_in_case:
        adds += [_Add(f"probe:{key}:distinct_cases", case_value, latest=True) for key in probe_keys]

    # One source image's faces searched one by one: keyed by the source, whoever searches.
    sources = sorted({source for source, _ in event.face_sources})
    adds += [
        _Add(f"source:{source}:distinct_faces", face, latest=True)
        for source, face in event.face_sources
    ]

    streams = {scope: [*EVENT_STREAMS, "distinct_probes"] for scope in scopes}
    streams["officer"] += ["distinct_cases", "distinct_identities"]
    streams["agency"].append("distinct_cases")
    if "case" in streams:
        streams["case"].append("distinct_identities")
    queries: list[_Query] = []
    for window, seconds in WINDOWS.items():
        since = now_ms - seconds * 1000
        for scope, prefix in scopes.items():
            queries += [
                _Query((scope, stream, window), f"{prefix}:{stream}", since)
                for stream in streams[scope]
            ]
        queries += [
            _Query(("probe", "distinct_cases", window), f"probe:{key}:distinct_cases", since)
            for key in probe_keys
        ]
        queries += [
            _Query(("source", "distinct_faces", window), f"source:{source}:distinct_faces", since)
            for source in sources
        ]
    return Plan(now_ms=now_ms, adds=tuple(adds), queries=tuple(queries))


@dataclass(frozen=True)
class _Undo:
    key: str
    member: str
    latest: bool
    previous: int | None  # a distinct member's score before this request (None: new)
    ours: int  # the score this request gave it


@dataclass(frozen=True)
class Reservation:
    """A request counted provisionally: its counts, and what to take back if it is refused."""

    counts: dict[str, Any]
    undo: tuple[_Undo, ...] = ()


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

    async def record_after(self, event: ActivityEvent, *, stream: str, count: int) -> None:
        """Count `count` things of `stream` for an event already reserved, learnt after the
        fact (the faces a vendor says it enrolled), at the event's time.

        Members the reservation added are not added twice, so the stream holds the larger
        of the two counts. When this returns, later `reserve`s see the count. Idempotent.
        """
        ...

    async def aclose(self) -> None: ...


class ActivityUnavailable(ServiceUnavailable):
    """The activity store could not be read or written."""


class _SortedSet:
    """A Redis sorted set in miniature: members with integer scores, counted by range."""

    def __init__(self) -> None:
        self.scores: dict[str, int] = {}
        self.order: list[tuple[int, str]] = []  # (score, member), sorted

    def add(self, member: str, score: int, *, latest: bool) -> int | None:
        previous = self.scores.get(member)
        if previous is not None:
            if latest and previous >= score:
                return previous
            self.remove(member)
        self.scores[member] = score
        bisect.insort(self.order, (score, member))
        return previous

    def remove(self, member: str) -> None:
        score = self.scores.pop(member, None)
        if score is not None:
            del self.order[bisect.bisect_left(self.order, (score, member))]

    def count_after(self, since: int) -> int:
        return len(self.order) - self._first_after(since)

    def trim(self, until: int) -> None:
        """Drop every member scored at or before `until`."""
        cut = self._first_after(until)
        for _, member in self.order[:cut]:
            del self.scores[member]
        del self.order[:cut]

    def _first_after(self, score: int) -> int:
        # (score + 1,) sorts after every (score, member) and before every (score + 1, member):
        # tuples compare in C, where a key= function would be a Python call per comparison.
        return bisect.bisect_left(self.order, (score + 1,))


class MemoryActivityStore:
    """The embedded default: one process's counts, in memory, lost on restart.

    With several replicas each would count only what it saw, so limits would multiply by the
    number of replicas: configure Redis for those.
    """

    name = "memory"

    def __init__(self) -> None:
        self._sets: dict[str, _SortedSet] = {}
        self._lock = threading.Lock()  # held only for in-memory work, never across an await
        self._reserves = 0

    async def reserve(self, event: ActivityEvent) -> Reservation:
        steps = plan(event)
        undo = []
        with self._lock:
            self._reserves += 1
            if self._reserves % _SWEEP_EVERY == 0:
                self._sweep(steps.now_ms)
            for add in steps.adds:
                members = self._sets.setdefault(add.key, _SortedSet())
                previous = members.add(add.member, steps.now_ms, latest=add.latest)
                members.trim(steps.now_ms - RETENTION_MS)
                undo.append(_Undo(add.key, add.member, add.latest, previous, steps.now_ms))
            results = [self._count(q) for q in steps.queries]
        return Reservation(counts=steps.counts(results), undo=tuple(undo))

    def _count(self, query: _Query) -> int:
        members = self._sets.get(query.key)
        return 0 if members is None else members.count_after(query.since_ms)

    def _sweep(self, now_ms: int) -> None:
        # Keys are trimmed when written; a key nobody writes again (one probe's digest) is
        # dropped here once its newest member has aged out, so memory stays bounded.
        cutoff = now_ms - RETENTION_MS
        stale = [k for k, s in self._sets.items() if not s.order or s.order[-1][0] <= cutoff]
        for key in stale:
            del self._sets[key]

    async def release(self, reservation: Reservation) -> None:
        with self._lock:
            for undo in reversed(reservation.undo):
                members = self._sets.get(undo.key)
                if members is None:
                    continue
                if not undo.latest:
                    members.remove(undo.member)
                elif members.scores.get(undo.member) == undo.ours:
                    members.remove(undo.member)
                    if undo.previous is not None:
                        members.add(undo.member, undo.previous, latest=False)

    async def record_after(self, event: ActivityEvent, *, stream: str, count: int) -> None:
        adds = plan_after(event, stream=stream, count=count)
        at_ms = int(event.at.timestamp() * 1000)
        with self._lock:
            for add in adds:
                members = self._sets.setdefault(add.key, _SortedSet())
                if add.member not in members.scores:
                    members.add(add.member, at_ms, latest=False)

    async def aclose(self) -> None:
        return None


# One round trip, atomic: Redis runs a script to completion before any other command.
# ARGV[1] is the plan as JSON: {"now", "retention", "adds": [[key index, member, latest]],
# "queries": [[key index, since]]}; KEYS holds every key it names (1-based). Returns the
# counts, then each add's previous score (-1: none) for taking the reservation back.
_RESERVE_LUA = """
local plan = cjson.decode(ARGV[1])
local previous = {}
local touched = {}
for i, add in ipairs(plan.adds) do
  local key = KEYS[add[1]]
  if add[3] then
    local old = redis.call('ZSCORE', key, add[2])
    previous[i] = old and tonumber(old) or -1
    redis.call('ZADD', key, 'GT', plan.now, add[2])
  else
    previous[i] = -1
    redis.call('ZADD', key, plan.now, add[2])
  end
  touched[key] = true
end
for key, _ in pairs(touched) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', plan.now - plan.retention)
  redis.call('PEXPIRE', key, plan.retention + 60000)
end
local counts = {}
for i, q in ipairs(plan.queries) do
  counts[i] = redis.call('ZCOUNT', KEYS[q[1]], '(' .. q[2], '+inf')
end
return {counts, previous}
"""

# ARGV[1]: [[key index, member, latest, previous (-1: none), ours]].
_RELEASE_LUA = """
for _, undo in ipairs(cjson.decode(ARGV[1])) do
  local key = KEYS[undo[1]]
  if not undo[3] then
    redis.call('ZREM', key, undo[2])
  else
    local current = redis.call('ZSCORE', key, undo[2])
    if current and tonumber(current) == undo[5] then
      if undo[4] >= 0 then
        redis.call('ZADD', key, undo[4], undo[2])
      else
        redis.call('ZREM', key, undo[2])
      end
    end
  end
end
return 0
"""


# ARGV[1]: {"at", "retention", "adds": [[key index, member]]}. NX: a member the reservation
# added keeps its place, so nothing is counted twice.
_RECORD_AFTER_LUA = """
local plan = cjson.decode(ARGV[1])
local touched = {}
for _, add in ipairs(plan.adds) do
  redis.call('ZADD', KEYS[add[1]], 'NX', plan.at, add[2])
  touched[KEYS[add[1]]] = true
end
for key, _ in pairs(touched) do
  redis.call('PEXPIRE', key, plan.retention + 60000)
end
return 0
"""


class RedisActivityStore:
    """Counts every replica shares, in Redis sorted sets (score: time in ms).

    Keys are `<prefix><scope>:<id>:<stream>`; each expires a minute after the longest window
    has passed since its last write. Members name request ids, case numbers and probe
    digests, never images. Needs Redis 6.2 or later (ZADD GT).
    """

    name = "redis"

    def __init__(
        self, url: str, *, key_prefix: str = "facegate:activity:", timeout_seconds: float = 1.0
    ) -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = key_prefix
        self._reserve = self._redis.register_script(_RESERVE_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)
        self._record_after = self._redis.register_script(_RECORD_AFTER_LUA)

    async def reserve(self, event: ActivityEvent) -> Reservation:
        steps = plan(event)
        keys = _Keys(self._prefix)
        document = {
            "now": steps.now_ms,
            "retention": RETENTION_MS,
            "adds": [[keys.index(a.key), a.member, a.latest] for a in steps.adds],
            "queries": [[keys.index(q.key), q.since_ms] for q in steps.queries],
        }
        counts, previous = await self._call(self._reserve, keys.names, document)
        undo = tuple(
            _Undo(a.key, a.member, a.latest, None if int(p) < 0 else int(p), steps.now_ms)
            for a, p in zip(steps.adds, previous, strict=True)
        )
        return Reservation(counts=steps.counts(counts), undo=undo)

    async def release(self, reservation: Reservation) -> None:
        if not reservation.undo:
            return
        keys = _Keys(self._prefix)
        document = [
            [
                keys.index(u.key),
                u.member,
                u.latest,
                -1 if u.previous is None else u.previous,
                u.ours,
            ]
            for u in reservation.undo
        ]
        await self._call(self._release, keys.names, document)

    async def record_after(self, event: ActivityEvent, *, stream: str, count: int) -> None:
        adds = plan_after(event, stream=stream, count=count)
        if not adds:
            return
        keys = _Keys(self._prefix)
        document = {
            "at": int(event.at.timestamp() * 1000),
            "retention": RETENTION_MS,
            "adds": [[keys.index(a.key), a.member] for a in adds],
        }
        await self._call(self._record_after, keys.names, document)

    @staticmethod
    async def _call(script: Any, keys: list[str], document: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await script(keys=keys, args=[json.dumps(document)])
        except (RedisError, OSError) as exc:
            raise ActivityUnavailable(f"Redis: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()


class _Keys:
    """The KEYS list of one script call, and each key's 1-based index in it."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._index: dict[str, int] = {}
        self.names: list[str] = []

    def index(self, key: str) -> int:
        if key not in self._index:
            self.names.append(self._prefix + key)
            self._index[key] = len(self.names)
        return self._index[key]
