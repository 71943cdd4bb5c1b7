"""Which requests VendorRoutes hands to a vendor adapter, and which go on to FastAPI."""

from __future__ import annotations

import pytest

from gateway.vendors import recognise
from gateway.vendors.inventory import Protocol


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/", Protocol.REKOGNITION),
        ("POST", "/face/v1.0/detect", Protocol.AZURE),
        ("DELETE", "/face/v1.2-preview.1/largepersongroups/g", Protocol.AZURE),
        ("POST", "/api/v1/recognition/recognize", Protocol.COMPREFACE),
        ("GET", "/api/v1/recognition/faces", Protocol.COMPREFACE),
        # facegate's own routes, and what no vendor SDK sends, are FastAPI's to answer.
        ("GET", "/", None),
        ("GET", "/facegate/health", None),
        ("GET", "/facegate/ready", None),
        ("GET", "/metrics", None),
        ("POST", "/metrics", None),
        ("POST", "/facegate/v1/sessions", None),
        ("HEAD", "/face/v1.0/detect", None),
        ("POST", "/face", None),
        ("POST", "/api/v2/recognition", None),
    ],
)
def test_requests_are_routed_by_method_and_path(
    method: str, path: str, expected: Protocol | None
) -> None:
    found = recognise(method, path)
    assert (found and found.protocol) == expected
