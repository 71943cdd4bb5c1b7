"""Each SigV4 signature is accepted once: a captured request cannot be sent again.

A signature covers the method, path, signed headers, body and the signing time, and the
clock-skew check accepts it for `max_clock_skew` either side of the gateway's clock. Within
that window, anyone who captured a signed identification could send it again, as often as
they liked; so a signature is spent when its request is forwarded, and remembered until its
window has closed (after that, the skew check refuses it on its own).

Spent on forwarding, not on arrival: a request refused by the policy or by a store that
was down (a 503) has done nothing, and the client's retry (boto3 signs at whole seconds and
does not sign its invocation id, so a retry within the second carries the same signature)
must not be taken for a replay. Management operations (listing, describing, deleting
collections) are idempotent at the vendor, so a replay of one adds nothing and they spend
nothing; everything that searches, compares, detects or enrols spends its signature.

Two caches behind one interface, like the activity windows (gateway/context/activity/):
in memory for one replica (the embedded default), in Redis when replicas share it.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from typing import Protocol

from gateway.errors import ServiceUnavailable


class ReplayCacheUnavailable(ServiceUnavailable):
    """The shared cache could not be read or written: the request is refused (fail closed),
    since accepting it unchecked would accept replays too."""

    code = "replay_cache_unavailable"


class ReplayCache(Protocol):
    async def seen(self, signature: str, *, now: datetime) -> bool:
        """Whether `signature` was already spent (by `first_use`) and is still remembered.
        Raises ReplayCacheUnavailable when it cannot tell."""
        ...

    async def first_use(self, signature: str, *, until: datetime, now: datetime) -> bool:
        """True the first time `signature` is seen before `until`, False for every later
        time. When it returns True the signature is recorded: every replica asking
        afterwards gets False. Raises ReplayCacheUnavailable when it cannot tell."""
        ...

    async def aclose(self) -> None: ...


class MemoryReplayCache:
    """One replica's memory. Entries leave once their window has closed, so it holds at most
    the signatures accepted within twice the clock-skew window."""

    name = "memory"

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}
        self._expiry: list[tuple[datetime, str]] = []  # a heap, soonest first

    async def seen(self, signature: str, *, now: datetime) -> bool:
        self._forget(now)
        return signature in self._until

    def _forget(self, now: datetime) -> None:
        while self._expiry and self._expiry[0][0] < now:
            expired, old = heapq.heappop(self._expiry)
            if self._until.get(old) == expired:
                del self._until[old]

    async def first_use(self, signature: str, *, until: datetime, now: datetime) -> bool:
        self._forget(now)
        if signature in self._until:
            return False
        self._until[signature] = until
        heapq.heappush(self._expiry, (until, signature))
        return True

    async def aclose(self) -> None:
        return None


class RedisReplayCache:
    """Shared by every replica: one `SET key NX PXAT` per accepted signature, atomic in
    Redis, so two replicas handed the same request at once accept it once between them."""

    name = "redis"

    def __init__(
        self, url: str, *, key_prefix: str = "facegate:replay:", timeout_seconds: float = 1.0
    ) -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = key_prefix

    async def seen(self, signature: str, *, now: datetime) -> bool:
        from redis.exceptions import RedisError

        try:
            return bool(await self._redis.exists(self._prefix + signature))
        except (RedisError, OSError) as exc:
            raise ReplayCacheUnavailable("the replay cache could not be read") from exc

    async def first_use(self, signature: str, *, until: datetime, now: datetime) -> bool:
        from redis.exceptions import RedisError

        expires_ms = max(int(until.timestamp() * 1000), int(now.timestamp() * 1000) + 1)
        try:
            created = await self._redis.set(
                self._prefix + signature, b"1", nx=True, pxat=expires_ms
            )
        except (RedisError, OSError) as exc:
            raise ReplayCacheUnavailable("the replay cache could not be read") from exc
        return bool(created)

    async def aclose(self) -> None:
        await self._redis.aclose()


class AcceptEveryReplay:
    """No replay check at all: for load benchmarks that resend one signed request
    (`refuse_replayed_signatures = false`, which the gateway warns about at start)."""

    name = "off"

    async def seen(self, signature: str, *, now: datetime) -> bool:
        return False

    async def first_use(self, signature: str, *, until: datetime, now: datetime) -> bool:
        return True

    async def aclose(self) -> None:
        return None
