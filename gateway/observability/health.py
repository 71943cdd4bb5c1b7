"""Readiness: whether this process can serve a vendor request now, and if not, what fails.

Liveness (/facegate/health) only says the process answers; readiness (/facegate/ready)
checks what every request needs, each within a short deadline:

    database   reachable, and its schema at this code's Alembic head
    redis      reachable (when FACEGATE_REDIS_URL is set: activity windows, replays)
    policy     a revision loaded and served
    log_key    the key file holds the key this process signs with, and the record of the
               last signed tree beside it can be read (a rotated or lost key means this
               process must not sign: it must be restarted)

A check's error names the failure's type, never a URL or a driver's message (which may
carry a password). Readiness does not make requests fail: each request still fails closed
on its own; it tells a load balancer to send them elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import redis.asyncio as redis_asyncio
import sqlalchemy as sa

from gateway.audit.checkpoint import CheckpointError, Signer

if TYPE_CHECKING:
    from gateway.services import Services

CHECK_TIMEOUT_SECONDS: Final = 2.0


class NotReady(Exception):
    """A check failed; the message says why, in words safe to show anyone."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    error: str | None = None


@functools.cache
def alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    from gateway.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def check_database(services: Services) -> None:
    async with services.engine.connect() as connection:
        try:
            version = (
                await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            ).scalar()
        except sa.exc.ProgrammingError as exc:
            raise NotReady("the database is not migrated (no alembic_version)") from exc
        except sa.exc.OperationalError as exc:
            if "no such table" in str(exc.orig):
                raise NotReady("the database is not migrated (no alembic_version)") from exc
            raise
    head = await asyncio.to_thread(alembic_head)
    if version != head:
        raise NotReady(f"the database schema is at {version}, this gateway needs {head}")


async def check_redis(services: Services) -> None:
    url = services.settings.redis_url
    assert url is not None
    timeout = services.settings.redis_timeout_seconds
    client = redis_asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


async def check_policy(services: Services) -> None:
    if not services.policy.revision:
        raise NotReady("no policy revision is loaded")


async def check_log_key(services: Services) -> None:
    signer = services.audit.signer
    if signer is None:
        raise NotReady("the audit log has no signing key")
    path = services.settings.log_key_file

    def read() -> None:
        try:
            on_disk = Signer.parse(path.read_text())
        except (OSError, CheckpointError) as exc:
            raise NotReady(f"the log key file cannot be read ({type(exc).__name__})") from exc
        if on_disk.verifier != signer.verifier:
            raise NotReady("the log key file holds another key than this process signs with")
        state = services.audit.signed_state
        if state is not None:
            try:
                state.read()
            except (OSError, CheckpointError) as exc:
                raise NotReady(
                    f"the record of the last signed tree cannot be read ({type(exc).__name__})"
                ) from exc

    await asyncio.to_thread(read)


Check = Callable[["Services"], Awaitable[None]]


def checks_for(services: Services) -> dict[str, Check]:
    checks: dict[str, Check] = {"database": check_database}
    if services.settings.redis_url:
        checks["redis"] = check_redis
    checks["policy"] = check_policy
    checks["log_key"] = check_log_key
    return checks


async def _run(check: Check, services: Services) -> CheckResult:
    try:
        await asyncio.wait_for(check(services), CHECK_TIMEOUT_SECONDS)
    except NotReady as exc:
        return CheckResult(ok=False, error=str(exc))
    except TimeoutError:
        return CheckResult(ok=False, error=f"no answer within {CHECK_TIMEOUT_SECONDS:g}s")
    except Exception as exc:
        # The type only: a driver's message may hold the URL and its password.
        return CheckResult(ok=False, error=type(exc).__name__)
    return CheckResult(ok=True)


async def readiness(services: Services) -> dict[str, CheckResult]:
    """Every check's result, run concurrently."""
    checks = checks_for(services)
    results = await asyncio.gather(*(_run(check, services) for check in checks.values()))
    return dict(zip(checks, results, strict=True))
