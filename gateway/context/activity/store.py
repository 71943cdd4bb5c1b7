"""The activity store's interface, the reservation it hands out and the error it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from gateway.context.activity.windows import ActivityEvent, ActivityReads
from gateway.errors import ServiceUnavailable


class Undo(NamedTuple):
    """How to take back one member a reservation added (a tuple: a request makes ~15)."""

    key: str
    member: str
    latest: bool
    previous: int | None  # a distinct member's score before this request (None: new)
    ours: int  # the score this request gave it


@dataclass(frozen=True)
class Reservation:
    """A request counted provisionally: its counts, and what to take back if it is refused."""

    counts: dict[str, Any]
    undo: tuple[Undo, ...] = ()


class ActivityStore(Protocol):
    """Sliding-window counts, shared by whoever shares the store (``windows.plan`` says
    what each request adds and reads). Every method raises `ActivityUnavailable` when the
    store cannot be reached; the pipeline then refuses the request (fail closed)."""

    name: str

    async def reserve(self, event: ActivityEvent, *, reads: ActivityReads = None) -> Reservation:
        """Count the event and return the counts including it, atomically with respect to
        every other `reserve` on the same store: two replicas deciding at once cannot both
        slip under a limit. When this returns, later `reserve`s see the event counted.

        The counts returned are `reads` (the policy's `activity_reads`) of the event's
        scopes, or all of them when None; what the event adds is the same either way."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Take a reservation back (the request was refused or failed before it was
        forwarded). Idempotent. A distinct mark gets back the score it had, unless a later
        request has moved it on since."""
        ...

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
