"""Which requests VendorRoutes hands to a vendor adapter, and which go on to FastAPI."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.api.vendor_routes import describe
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


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/", b""),
        ("/face/v1.0/largepersongroups/g%20x/persons", b"top=10&start=a%2Fb"),
        ("/face/v1.0/persongroups/a?b#c\\d", b"x=\xc3\xa9"),  # what the URL escapes
        ("//face/v1.0/detect", b"returnFaceId=true"),
        ("/face/v1.0/detect", b"a=1\tb#frag"),  # what urlsplit drops or splits on
    ],
)
def test_describe_reads_path_and_query_as_starlettes_url_does(path: str, query: bytes) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"gateway:8000"), (b"x-amz-target", b"T")],
        "client": ("10.0.0.1", 5000),
        "server": ("10.0.0.2", 8000),
        "scheme": "http",
        "state": {"request_id": "r-1"},
    }
    described = describe(scope)
    url = Request(scope).url
    assert (described.path, described.query) == (url.path, url.query)
    assert described.headers == {"host": "gateway:8000", "x-amz-target": "T"}
    assert (described.request_id, described.client_address) == ("r-1", "10.0.0.1")
