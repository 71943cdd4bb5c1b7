"""The embedded activity store: one process's windows, in memory."""

from __future__ import annotations

import bisect
import threading

from gateway.context.activity.store import Reservation, Undo
from gateway.context.activity.windows import (
    RETENTION_MS,
    ActivityEvent,
    plan,
    plan_after,
)

_SWEEP_EVERY = 1024  # reserves between sweeps of the in-memory store


class _SortedSet:
    """A Redis sorted set in miniature: members with integer scores, counted by range.

    `order` keeps (score, member) sorted, to find one member; `times` keeps the same scores
    alone, index for index, to count by range: a request counts ~100 ranges, and a search
    over plain ints runs about twice as fast as one over tuples.
    """

    def __init__(self) -> None:
        self.scores: dict[str, int] = {}
        self.order: list[tuple[int, str]] = []  # (score, member), sorted
        self.times: list[int] = []  # order[i][0] at i

    def add(self, member: str, score: int, *, latest: bool) -> int | None:
        previous = self.scores.get(member)
        if previous is not None:
            if latest and previous >= score:
                return previous
            self.remove(member)
        self.scores[member] = score
        at = bisect.bisect_right(self.order, (score, member))
        self.order.insert(at, (score, member))
        self.times.insert(at, score)
        return previous

    def remove(self, member: str) -> None:
        score = self.scores.pop(member, None)
        if score is not None:
            at = bisect.bisect_left(self.order, (score, member))
            del self.order[at]
            del self.times[at]

    def counts_after(self, since: tuple[int, ...]) -> list[int]:
        """How many members are scored after each of `since`, which must not increase (the
        windows, shortest first): each cut is then searched for below the one before."""
        times, total, below = self.times, len(self.times), len(self.times)
        counts = []
        for score in since:
            below = bisect.bisect_right(times, score, 0, below)
            counts.append(total - below)
        return counts

    def trim(self, until: int) -> None:
        """Drop every member scored at or before `until`."""
        cut = bisect.bisect_right(self.times, until)
        for _, member in self.order[:cut]:
            del self.scores[member]
        del self.order[:cut]
        del self.times[:cut]


_NOTHING = _SortedSet()  # what a key nobody has written holds; never written itself


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
                members = self._sets.get(add.key)
                if members is None:
                    members = self._sets[add.key] = _SortedSet()
                previous = members.add(add.member, steps.now_ms, latest=add.latest)
                members.trim(steps.now_ms - RETENTION_MS)
                undo.append(Undo(add.key, add.member, add.latest, previous, steps.now_ms))
            since = steps.since_ms
            results = [self._sets.get(r.key, _NOTHING).counts_after(since) for r in steps.reads]
        return Reservation(counts=steps.counts(results), undo=tuple(undo))

    def _sweep(self, now_ms: int) -> None:
        # Keys are trimmed when written; a key nobody writes again (one probe's digest) is
        # dropped here once its newest member has aged out, so memory stays bounded.
        cutoff = now_ms - RETENTION_MS
        stale = [k for k, s in self._sets.items() if not s.times or s.times[-1] <= cutoff]
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
