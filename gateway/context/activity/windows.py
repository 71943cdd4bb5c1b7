"""What one request adds to the activity windows, and which counts it reads back: a plan,
pure (no store, no clock but the event's own time), that every store carries out alike.
The windows and streams are described in the package's docstring."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from gateway.context.identity import identity_keys
from gateway.operations import OperationKind

# name -> length in seconds, shortest first: the memory store searches each window's start
# below the one before (_SortedSet.counts_after).
WINDOWS: dict[str, int] = {
    "second": 1,
    "ten_seconds": 10,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
}
RETENTION_MS = max(WINDOWS.values()) * 1000
EVENT_STREAMS = ("requests", "probes", "identifications", "enrolments")


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


class Add(NamedTuple):
    key: str
    member: str
    latest: bool  # a distinct value: its score becomes the later of its old one and now


class Read(NamedTuple):
    """One key read back in `windows` (names, WINDOWS order), as `scope`/`stream` of the
    counts document."""

    scope: str
    stream: str
    key: str
    windows: tuple[str, ...]


# One count of the counts document as the policy names it: (scope, stream, window).
ActivityRead = tuple[str, str, str]
# The counts a policy revision reads (its `activity_reads`), or None: every count.
ActivityReads = frozenset[ActivityRead] | None


# The windows' names and lengths in ms, in WINDOWS order: a Read's counts come back in it.
_WINDOW_NAMES = tuple(WINDOWS)
_WINDOW_MS = {name: seconds * 1000 for name, seconds in WINDOWS.items()}


@dataclass(frozen=True)
class Plan:
    """What one event adds, and which counts it reads back: pure, shared by every store."""

    now_ms: int
    adds: tuple[Add, ...]
    # Each key once, read in the windows the policy reads of it: a store counts a key's
    # members after each of `since(read)`, where ~100 (key, window) queries a request used
    # to cost 0.3 ms to build.
    reads: tuple[Read, ...]

    def since(self, read: Read) -> tuple[int, ...]:
        """Where each window of `read` starts, in WINDOWS order (longest last): the read
        counts the members scored after it."""
        now = self.now_ms
        return tuple(now - _WINDOW_MS[name] for name in read.windows)

    def starts(self) -> list[tuple[int, ...]]:
        """`since(read)` of each read, in read order. The reads of a plan share a few
        window tuples (those a policy reads of each stream), so each distinct one is worked
        out once: twenty-odd reads a request, and a tuple built for each was about a tenth
        of the memory store's reserve."""
        worked_out: dict[tuple[str, ...], tuple[int, ...]] = {}
        starts = []
        for read in self.reads:
            start = worked_out.get(read.windows)
            if start is None:
                start = worked_out[read.windows] = self.since(read)
            starts.append(start)
        return starts

    def counts(self, results: Iterable[Sequence[int]]) -> dict[str, Any]:
        """The counts document from one result per read, in read order, each result its
        counts in the read's windows, as ints."""
        document: dict[str, Any] = {}
        for (scope, stream, _, names), values in zip(self.reads, results, strict=True):
            streams = document.get(scope)
            if streams is None:
                streams = document[scope] = {}
            windows = streams.get(stream)
            if windows is None:
                streams[stream] = dict(zip(names, values, strict=True))
            else:
                # Several probe keys answer one path: the policy sees the largest.
                for name, value in zip(names, values, strict=True):
                    windows[name] = max(windows[name], value)
        return document


def _case_id(agency: str, case_number: str) -> str:
    # Case numbers are per agency; the key is opaque so that neither may forge the other.
    return hashlib.sha256(json.dumps([agency, case_number]).encode()).hexdigest()[:32]


def _scopes(event: ActivityEvent) -> dict[str, str]:
    return _scopes_of(event.officer, event.agency, event.case_number)


def _scopes_of(officer: str, agency: str, case_number: str | None) -> dict[str, str]:
    """Each scope's key prefix: officer, agency, and case when there is one."""
    scopes = {"officer": f"officer:{officer}", "agency": f"agency:{agency}"}
    if case_number:
        scopes["case"] = f"case:{_case_id(agency, case_number)}"
    return scopes


# Most members one after-the-fact count adds: far past any limit a policy sets, and it keeps
# one Redis call bounded whatever number a vendor's answer claims.
MAX_RECORDED_AFTER = 10_000


def plan_after(event: ActivityEvent, *, stream: str, count: int) -> tuple[Add, ...]:
    """The members an after-the-fact count adds: "<request id>:<n>" for n below `count`, in
    every scope of the event. The reservation added "<request id>:0".. for what it counted,
    so a member both add is counted once: the stream keeps the larger of the two counts."""
    if stream not in EVENT_STREAMS:
        raise ValueError(f"{stream!r} is not an event stream")
    count = max(0, min(count, MAX_RECORDED_AFTER))
    return tuple(
        Add(f"{prefix}:{stream}", f"{event.request_id}:{i}", latest=False)
        for prefix in _scopes(event).values()
        for i in range(count)
    )


# The (scope, stream) pairs a request can read back of its own scopes, in the counts
# document's order: they depend on whether the request has a case, not on what else it holds.
_READS: tuple[tuple[str, str], ...] = (
    *(("officer", s) for s in (*EVENT_STREAMS, "distinct_probes")),
    ("officer", "distinct_cases"),
    ("officer", "distinct_identities"),
    *(("agency", s) for s in (*EVENT_STREAMS, "distinct_probes")),
    ("agency", "distinct_cases"),
)
_CASE_READS = (
    *_READS,
    *(("case", s) for s in (*EVENT_STREAMS, "distinct_probes")),
    ("case", "distinct_identities"),
)
# Besides them, the keys of what the request names: each probe's and each source image's.
_PROBE_READ = ("probe", "distinct_cases")
_SOURCE_READ = ("source", "distinct_faces")
# Every (scope, stream) the windows count: what a policy may declare it reads.
COUNTED: frozenset[tuple[str, str]] = frozenset((*_CASE_READS, _PROBE_READ, _SOURCE_READ))


def activity_reads(declared: Any) -> frozenset[ActivityRead]:
    """The triples a policy declares it reads (its `activity_reads`, a JSON list of
    [scope, stream, window]), checked against what the windows count. Raises ValueError
    naming the first triple that is not one: a policy reading a count no store keeps would
    read 0 there, which no limit catches."""
    if not isinstance(declared, list):
        raise ValueError(
            f"activity_reads must be a set of [scope, stream, window], not {declared!r}"
        )
    reads: set[ActivityRead] = set()
    for triple in declared:
        if (
            not isinstance(triple, list)
            or len(triple) != 3
            or not all(isinstance(part, str) for part in triple)
            or (triple[0], triple[1]) not in COUNTED
            or triple[2] not in WINDOWS
        ):
            raise ValueError(
                f"activity_reads holds {triple!r}, which is no count the gateway keeps"
            )
        reads.add((triple[0], triple[1], triple[2]))
    return frozenset(reads)


# Each (scope, stream) read of every count: a policy that declares no reads.
_EVERY_WINDOW = {pair: _WINDOW_NAMES for pair in COUNTED}


@functools.lru_cache(maxsize=8)
def _windows_read(reads: ActivityReads) -> dict[tuple[str, str], tuple[str, ...]]:
    """(scope, stream) -> the windows read of it, in WINDOWS order; pairs read in none are
    left out. A few revisions' reads at most are ever in use at once."""
    if reads is None:
        return _EVERY_WINDOW
    return {
        pair: windows
        for pair in COUNTED
        if (windows := tuple(w for w in _WINDOW_NAMES if (*pair, w) in reads))
    }


@dataclass(frozen=True)
class _Layout:
    """What a plan takes from who asks and under which case, not from the request: its
    scopes' keys and the reads of its scopes. The same for every request of one officer in
    one case, so it is built once for them (`_layout`) rather than ~40 strings per request.
    """

    prefixes: tuple[str, ...]  # each scope's key prefix, in `_scopes` order
    # stream -> its key in each scope, in `prefixes` order
    event_keys: tuple[tuple[str, tuple[str, ...]], ...]
    distinct_probes: tuple[str, ...]  # each scope's distinct_probes key
    distinct_cases: tuple[str, ...]  # the officer's and the agency's
    distinct_identities: tuple[str, ...]  # the officer's, and the case's when there is one
    case_value: str  # the member a case is marked by
    reads: tuple[Read, ...]  # every scope read, in the counts document's order
    probe_windows: tuple[str, ...]  # the windows read of each probe key; () none
    source_windows: tuple[str, ...]  # the windows read of each source image; () none


# Distinct (officer, agency, case, reads) whose layouts are kept: far more than a replica's
# officers at work at once; past it the least recent is built again when next asked for.
_LAYOUTS_KEPT = 1024


@functools.lru_cache(maxsize=_LAYOUTS_KEPT)
def _layout(officer: str, agency: str, case_number: str | None, reads: ActivityReads) -> _Layout:
    scopes = _scopes_of(officer, agency, case_number)
    windows = _windows_read(reads)
    prefixes = tuple(scopes.values())
    return _Layout(
        prefixes=prefixes,
        event_keys=tuple(
            (stream, tuple(f"{prefix}:{stream}" for prefix in prefixes)) for stream in EVENT_STREAMS
        ),
        distinct_probes=tuple(f"{prefix}:distinct_probes" for prefix in prefixes),
        distinct_cases=tuple(f"{scopes[scope]}:distinct_cases" for scope in ("officer", "agency")),
        distinct_identities=tuple(
            f"{scopes[scope]}:distinct_identities"
            for scope in ("officer", "case")
            if scope in scopes
        ),
        case_value=json.dumps([agency, case_number]),
        reads=tuple(
            Read(scope, stream, f"{scopes[scope]}:{stream}", windows[scope, stream])
            for scope, stream in (_CASE_READS if "case" in scopes else _READS)
            if (scope, stream) in windows
        ),
        probe_windows=windows.get(_PROBE_READ, ()),
        source_windows=windows.get(_SOURCE_READ, ()),
    )


def plan(event: ActivityEvent, *, reads: ActivityReads = None) -> Plan:
    """What `event` adds, and the counts it reads back: `reads` (a policy revision's
    `activity_reads`), or every count when None. What it adds does not depend on `reads`:
    the windows count the same whichever revision reads them."""
    now_ms = int(event.at.timestamp() * 1000)
    layout = _layout(event.officer, event.agency, event.case_number or None, reads)

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
    # Every stream's n-th member is the same "<request id>:<n>", in each scope.
    members = [f"{event.request_id}:{i}" for i in range(max(per_stream.values()))]
    adds: list[Add] = []
    for scope_index in range(len(layout.prefixes)):
        for stream, keys in layout.event_keys:
            key = keys[scope_index]
            # max: a count below zero adds nothing (a slice would count from the end)
            adds += [Add(key, member, False) for member in members[: max(per_stream[stream], 0)]]

    # A comparison against stored identities is a search of the reference data, whatever
    # the policy later calls it: it marks the case for the sweep rules as a 1:N search does.
    searches = event.kind == OperationKind.IDENTIFY or bool(event.compared_identities)
    identifies_in_case = bool(searches and event.case_number)
    case_value = layout.case_value
    # A probe is known by its picture, not its bytes: the same face appended to or
    # re-encoded is the same probe. Its identity's band keys are each a probe key; the
    # policy sees the largest count any of them holds (Plan.counts).
    probes = event.probe_identities or event.probe_digests
    probe_keys = [key for probe in probes for key in identity_keys(probe)]
    # Scope by scope (officer, agency, case), as the counts document reads them.
    identities = event.compared_identities
    for scope_index, probes_key in enumerate(layout.distinct_probes):
        adds += [Add(probes_key, p, True) for p in probes]
        if identifies_in_case and scope_index < 2:  # the officer's and the agency's
            adds.append(Add(layout.distinct_cases[scope_index], case_value, True))
        if identities and scope_index != 1:  # the officer's and the case's
            key = layout.distinct_identities[min(scope_index, 1)]
            adds += [Add(key, identity, True) for identity in identities]
    if identifies_in_case:
        adds += [Add(f"probe:{key}:distinct_cases", case_value, True) for key in probe_keys]

    # One source image's faces searched one by one: keyed by the source, whoever searches.
    sources = sorted({source for source, _ in event.face_sources})
    adds += [
        Add(f"source:{source}:distinct_faces", face, True) for source, face in event.face_sources
    ]

    read = layout.reads
    if probe_keys and layout.probe_windows:
        probe_windows = layout.probe_windows
        read += tuple(
            Read("probe", "distinct_cases", f"probe:{key}:distinct_cases", probe_windows)
            for key in probe_keys
        )
    if sources and layout.source_windows:
        source_windows = layout.source_windows
        read += tuple(
            Read("source", "distinct_faces", f"source:{source}:distinct_faces", source_windows)
            for source in sources
        )
    return Plan(now_ms=now_ms, adds=tuple(adds), reads=read)
