"""An upstream that answers every Rekognition call at once: the baseline the gateway is
measured against. Serve with `uvicorn --app-dir bench upstream_stub:app`.

FACEGATE_STUB_NO_MATCHES=1: answer searches with no FaceMatches (no candidate, so no lead is
opened): bench/cpu_per_request.py measures the request path without the leads book."""

from __future__ import annotations

import json
import os

from starlette.types import Receive, Scope, Send

ANSWER = json.dumps(
    {
        "SearchedFaceBoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.4, "Top": 0.1},
        "SearchedFaceConfidence": 99.9,
        "FaceMatches": [
            {"Similarity": 99.6, "Face": {"FaceId": "f-1", "ExternalImageId": "booking-1"}}
        ]
        if not os.environ.get("FACEGATE_STUB_NO_MATCHES")
        else [],
        "FaceModelVersion": "6.0",
    }
).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body like a real server would
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/x-amz-json-1.1")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})
