"""The shared activity store: every replica's windows, in Redis sorted sets."""

from __future__ import annotations

import json
from typing import Any

from gateway.context.activity.store import ActivityUnavailable, Reservation, Undo
from gateway.context.activity.windows import (
    RETENTION_MS,
    ActivityEvent,
    ActivityReads,
    plan,
    plan_after,
)
from gateway.observability.metrics import ACTIVITY_STORE_ERRORS

# One round trip, atomic: Redis runs a script to completion before any other command.
# ARGV[1] is the plan as JSON: {"now", "retention", "adds": [[key index, member, latest]],
# "reads": [[key index, [since ms, ...]]]}; KEYS holds every key it names (1-based). Returns
# each read's counts after each of its `since`, then each add's previous score (-1: none)
# for taking the reservation back.
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
for i, read in ipairs(plan.reads) do
  local key = KEYS[read[1]]
  local found = {}
  for j, since in ipairs(read[2]) do
    found[j] = redis.call('ZCOUNT', key, '(' .. since, '+inf')
  end
  counts[i] = found
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

    async def reserve(self, event: ActivityEvent, *, reads: ActivityReads = None) -> Reservation:
        steps = plan(event, reads=reads)
        keys = _Keys(self._prefix)
        document = {
            "now": steps.now_ms,
            "retention": RETENTION_MS,
            "adds": [[keys.index(a.key), a.member, a.latest] for a in steps.adds],
            "reads": [
                [keys.index(r.key), since]
                for r, since in zip(steps.reads, steps.starts(), strict=True)
            ],
        }
        counts, previous = await self._call(self._reserve, keys.names, document)
        undo = tuple(
            Undo(a.key, a.member, a.latest, None if int(p) < 0 else int(p), steps.now_ms)
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
            ACTIVITY_STORE_ERRORS.inc()
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
