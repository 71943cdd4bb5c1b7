"""The embedded activity store: one process's windows, in memory."""

from __future__ import annotations

import bisect
import threading

from gateway.context.activity.store import Reservation, Undo
from gateway.context.activity.windows import (
    RETENTION_MS,
    ActivityEvent,
    ActivityReads,
    plan,
    plan_after,
)

_SWEEP_EVERY = 1024  # reserves between sweeps of the in-memory store


class _SortedSet:
    """A Redis sorted set in miniature: members with integer scores, counted by range.

    `order` keeps (score, member) sorted, to find one member; `times` keeps the same scores
    alone, index for index, to count by range: a request counts a few dozen ranges, and a search
    over plain ints runs about twice as fast as one over tuples.

    Members trimmed away leave the set at once (`scores`, every search and count), but
    their places at the front of the two lists are dropped in batches: `head` is the first
    place still in the set, and every search starts there. Dropping the front of a list
    moves all of the rest, so dropping it on each trim would cost a request time in
    proportion to the set: a day of an agency's requests is millions of members, one or
    two of which age out at every request. They are dropped once they are a quarter of the
    lists: moving the rest then costs a few places per member trimmed, and the places kept
    are at most a third as many as the members.
    """

    def __init__(self) -> None:
        self.scores: dict[str, int] = {}
        self.order: list[tuple[int, str]] = []  # (score, member), sorted from `head` on
        self.times: list[int] = []  # order[i][0] at i
        self.head = 0  # places before it are of members trimmed away

    def add(self, member: str, score: int, *, latest: bool) -> int | None:
        previous = self.scores.get(member)
        if previous is not None:
            if latest and previous >= score:
                return previous
            self.remove(member)
        self.scores[member] = score
        order = self.order
        entry = (score, member)
        if not order or entry > order[-1]:  # the usual case: scored now, after every other
            order.append(entry)
            self.times.append(score)
        else:
            at = bisect.bisect_right(order, entry, self.head)
            order.insert(at, entry)
            self.times.insert(at, score)
        return previous

    def remove(self, member: str) -> None:
        score = self.scores.pop(member, None)
        if score is not None:
            at = bisect.bisect_left(self.order, (score, member), self.head)
            del self.order[at]
            del self.times[at]

    def counts_after(self, since: tuple[int, ...]) -> list[int]:
        """How many members are scored after each of `since`, which must not increase (the
        windows, shortest first): each cut is then searched for below the one before, and
        none once the oldest member is after a cut (the day's, always, in a set trimmed
        now)."""
        times, head = self.times, self.head
        total = below = len(times)
        counts: list[int] = []
        for score in since:
            if below == head or times[head] > score:
                # Every member is after this cut, and so after each later (earlier) one.
                counts += [total - head] * (len(since) - len(counts))
                break
            below = bisect.bisect_right(times, score, head, below)
            counts.append(total - below)
        return counts

    def trim(self, until: int) -> None:
        """Drop every member scored at or before `until`."""
        times, head = self.times, self.head
        if head == len(times) or times[head] > until:  # nothing to drop: most calls
            return
        cut = bisect.bisect_right(times, until, head)
        for _, member in self.order[head:cut]:
            del self.scores[member]
        if cut * 4 > len(times):
            del self.order[:cut]
            del times[:cut]
            cut = 0
        self.head = cut

    def newest(self) -> int | None:
        """The latest score in the set, None when it is empty."""
        return self.times[-1] if self.head < len(self.times) else None


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

    async def reserve(self, event: ActivityEvent, *, reads: ActivityReads = None) -> Reservation:
        steps = plan(event, reads=reads)
        now = steps.now_ms
        until = now - RETENTION_MS
        since = steps.starts()
        sets = self._sets
        undo = []
        with self._lock:
            self._reserves += 1
            if self._reserves % _SWEEP_EVERY == 0:
                self._sweep(now)
            for key, member, latest in steps.adds:
                members = sets.get(key)
                if members is None:
                    members = sets[key] = _SortedSet()
                previous = members.add(member, now, latest=latest)
                members.trim(until)
                undo.append(Undo(key, member, latest, previous, now))
            results = [
                sets.get(read.key, _NOTHING).counts_after(after)
                for read, after in zip(steps.reads, since, strict=True)
            ]
        return Reservation(counts=steps.counts(results), undo=tuple(undo))

    def _sweep(self, now_ms: int) -> None:
        # Keys are trimmed when written; a key nobody writes again (one probe's digest) is
        # dropped here once its newest member has aged out, so memory stays bounded.
        cutoff = now_ms - RETENTION_MS
        stale = [k for k, s in self._sets.items() if _stale(s.newest(), cutoff)]
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


def _stale(newest: int | None, cutoff: int) -> bool:
    return newest is None or newest <= cutoff
