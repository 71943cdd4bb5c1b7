"""A large body is parsed on a worker thread, so one client's 5 MB upload does not hold every
other request on the event loop while it is decoded (issue 11: 60,000 parts once blocked the
loop for 24 s)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.pipeline import PARSE_ON_LOOP_BYTES
from gateway.requests import IncomingRequest
from gateway.vendors.base import ParsedRequest
from gateway.vendors.rekognition import RekognitionAdapter
from refvendor import samples
from tests.e2e.conftest import Stack


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_large_body_is_parsed_off_the_event_loop(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on_loop: dict[int, bool] = {}
    parse = RekognitionAdapter.parse

    def watched(self: RekognitionAdapter, request: IncomingRequest) -> ParsedRequest:
        parsed_on_loop[len(request.body)] = on_event_loop()
        return parse(self, request)

    monkeypatch.setattr(RekognitionAdapter, "parse", watched)
    client = stack.rekognition(await stack.session())
    client.detect_faces(Image={"Bytes": samples.astronaut_variant_jpeg()})  # about 31 KB
    client.detect_faces(Image={"Bytes": samples.astronaut_jpeg()})  # about 91 KB

    small, large = sorted(parsed_on_loop)
    assert small <= PARSE_ON_LOOP_BYTES < large
    assert parsed_on_loop == {small: True, large: False}
