"""A signed request is accepted once, and whatever it states about the case is signed.

A captured identification could be sent again for the 15 minutes of the clock-skew window,
and an `X-Facegate-*` header added to a captured request changed what was judged: a search
refused as `warrant_required` was allowed once `X-Facegate-Warrant` was added, unsigned.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from gateway.app import create_app
from gateway.auth.replay import MemoryReplayCache, RedisReplayCache
from gateway.serving import BackgroundServer, free_port
from gateway.vendors.inventory import Protocol
from refvendor import samples
from tests.e2e.conftest import Stack, gateway_settings, vendor_calls
from tests.e2e.test_bad_input import post, records_of, signed

SEARCH = "RekognitionService.SearchFacesByImage"
BODY = json.dumps(
    {
        "CollectionId": "mugshots",
        "Image": {"Bytes": base64.b64encode(samples.astronaut_variant_jpeg()).decode()},
    }
).encode()


async def test_a_replayed_identification_is_refused_and_recorded(stack: Stack) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session()
    headers = signed(stack, credentials, target=SEARCH, body=BODY)
    assert post(stack, headers, BODY).status_code == 200
    before = vendor_calls(stack.vendor)

    replayed = post(stack, headers, BODY)

    assert replayed.status_code == 400
    assert replayed.json()["__type"] == "InvalidSignatureException"
    assert vendor_calls(stack.vendor) == before
    [record] = await records_of(stack, event_type="auth_failure")
    assert record.reason_codes == ["replayed_request"]
    assert record.key_id == credentials.access_key_id


async def test_a_request_refused_by_the_policy_may_be_sent_again(stack: Stack) -> None:
    # Refused (no warrant yet): nothing was forwarded, so the signature is not spent, and
    # the client's retry of the very same request is judged again, not taken for a replay.
    credentials = await stack.session()
    headers = signed(stack, credentials, target=SEARCH, body=BODY)
    assert post(stack, headers, BODY).json()["__type"] == "AccessDeniedException"
    await stack.warrant("W-1")

    retried = post(stack, headers, BODY)

    assert retried.status_code == 200, retried.text


async def test_an_unsigned_facegate_header_is_refused(stack: Stack) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session(warrant_id=None)
    headers = signed(stack, credentials, target=SEARCH, body=BODY)
    headers["X-Facegate-Warrant"] = "W-1"  # added after signing, as an interceptor would
    before = vendor_calls(stack.vendor)

    response = post(stack, headers, BODY)

    assert response.status_code == 400
    assert response.json()["__type"] == "InvalidSignatureException"
    assert vendor_calls(stack.vendor) == before
    [record] = await records_of(stack, event_type="auth_failure")
    assert record.reason_codes == ["invalid_signature"]


async def test_a_signed_facegate_header_is_judged(stack: Stack) -> None:
    await stack.warrant("W-1")
    credentials = await stack.session(warrant_id=None)
    warrant = {"X-Facegate-Warrant": "W-1"}
    headers = signed(stack, credentials, target=SEARCH, body=BODY, extra_headers=warrant)

    response = post(stack, headers, BODY)

    assert response.status_code == 200, response.text
    [record] = await records_of(stack, event_type="decision")
    assert record.warrant_id == "W-1"


async def test_the_memory_cache_accepts_a_signature_once_until_it_expires() -> None:
    from datetime import UTC, datetime, timedelta

    cache = MemoryReplayCache()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    until = now + timedelta(minutes=15)

    assert not await cache.seen("a" * 64, now=now)
    assert await cache.first_use("a" * 64, until=until, now=now)
    assert await cache.seen("a" * 64, now=now)
    assert not await cache.first_use("a" * 64, until=until, now=now + timedelta(minutes=1))
    assert await cache.first_use("b" * 64, until=until, now=now)
    # Past its expiry the clock-skew check refuses the request anyway; the entry can go.
    assert await cache.first_use("a" * 64, until=until, now=until + timedelta(seconds=1))


async def test_an_unreachable_replay_cache_refuses_on_record(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> None:
    settings = gateway_settings(migrated_database_url, tmp_path, vendor.url)
    app = create_app(settings)
    with BackgroundServer(app) as server:
        stack = Stack(settings=settings, url=server.url, vendor=vendor)
        # The gateway's cache, pointed at a Redis that is not there (a closed port).
        authenticator = app.state.services.authenticators[Protocol.REKOGNITION].sigv4
        object.__setattr__(
            authenticator,
            "replays",
            RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5),
        )
        credentials = await stack.session()
        before = vendor_calls(vendor)

        response = post(stack, signed(stack, credentials, target=SEARCH, body=BODY), BODY)

        assert response.status_code == 503
        assert response.json()["__type"] == "ServiceUnavailableException"
        assert vendor_calls(vendor) == before
        [record] = await records_of(stack, event_type="auth_failure")
        assert record.reason_codes == ["replay_cache_unavailable"]
