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

**Only the counts the policy reads are read back.** The policy declares them
(`data.facegate.activity_reads`: [scope, stream, window] triples, about a dozen of the ~110
above); `reserve(event, reads=...)` counts each of them and no other, and the document
holds exactly those of the request's scopes (None: every count, for a policy that declares
none). What a request adds is the same whatever is read: a later revision that reads more
finds every window complete. `activity_reads()` refuses a triple no store keeps (`COUNTED`,
`WINDOWS`).

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

One module per job: `windows.py` plans what a request adds and which counts it reads back
(pure, shared by every store); `store.py` is the interface and its contract; two drivers,
`memory.py` (`MemoryActivityStore`, the embedded default: one process, counts lost on
restart) and `redis_store.py` (`RedisActivityStore`, which every replica shares). Both keep
sorted sets scored by time in ms, trimmed to the longest window, so every count is one
range count:

- event streams (requests, probes, ...): one member per thing counted, "<request id>:<n>";
- distinct streams: one member per value (a case, a probe digest) scored by when it was
  last seen, so "distinct cases in the last day" counts members seen since a day ago.

Taking back a distinct mark restores the score it had before, unless a later request has
moved it on since (then that request's time stands). If that later request is itself taken
back, it restores the refused request's time: again an error towards refusing.
"""

from gateway.context.activity.memory import MemoryActivityStore
from gateway.context.activity.redis_store import RedisActivityStore
from gateway.context.activity.store import ActivityStore, ActivityUnavailable, Reservation
from gateway.context.activity.windows import (
    COUNTED,
    EVENT_STREAMS,
    MAX_RECORDED_AFTER,
    RETENTION_MS,
    WINDOWS,
    ActivityEvent,
    ActivityRead,
    ActivityReads,
    Plan,
    activity_reads,
    plan,
    plan_after,
)

__all__ = [
    "COUNTED",
    "EVENT_STREAMS",
    "MAX_RECORDED_AFTER",
    "RETENTION_MS",
    "WINDOWS",
    "ActivityEvent",
    "ActivityRead",
    "ActivityReads",
    "ActivityStore",
    "ActivityUnavailable",
    "MemoryActivityStore",
    "Plan",
    "RedisActivityStore",
    "Reservation",
    "activity_reads",
    "plan",
    "plan_after",
]
