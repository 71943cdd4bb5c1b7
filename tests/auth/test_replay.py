"""The replay cache shared by replicas: two gateways, one Redis, a signature accepted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.auth.replay import RedisReplayCache, ReplayCacheUnavailable
from gateway.serving import free_port
from tests.conftest import REDIS_URL


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


async def test_two_replicas_accept_a_signature_once_between_them(prefix: str) -> None:
    first, second = (RedisReplayCache(REDIS_URL, key_prefix=prefix) for _ in range(2))
    now = datetime.now(UTC)
    until = now + timedelta(minutes=15)
    try:
        assert not await second.seen("a" * 64, now=now)
        assert await first.first_use("a" * 64, until=until, now=now)
        assert await second.seen("a" * 64, now=now)
        assert not await second.first_use("a" * 64, until=until, now=now)
        assert not await first.first_use("a" * 64, until=until, now=now)
        assert await second.first_use("b" * 64, until=until, now=now)
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_unreachable_cache_fails_closed() -> None:
    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    now = datetime.now(UTC)
    try:
        with pytest.raises(ReplayCacheUnavailable):
            await cache.first_use("a" * 64, until=now + timedelta(minutes=1), now=now)
    finally:
        await cache.aclose()
