"""The reference vendor's HTTP app: Rekognition's JSON 1.1 protocol on ``POST /``.

(Azure Face and CompreFace answer beside it; see ``refvendor.azure`` and
``refvendor.compreface``. Their calls are counted as ``azure:<op>`` and
``compreface:<op>``.)

A request is ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>``
and a JSON body, signed with SigV4. The app handles each one in this order:

1. count it in ``app.state.calls`` under its operation name (the target as
   sent when it is not ``RekognitionService.*``), whatever happens next;
2. read the body, refusing bodies no valid request can have;
3. verify the signature against the configured credentials;
4. dispatch to the operation (``refvendor.operations``).

Failures come back as Rekognition does it: HTTP 400 (500 for a vendor bug)
with ``{"__type": ..., "Message": ...}``. ``GET /__refvendor/calls`` returns
the counts as JSON, for tests, and ``GET /__refvendor/requests`` what each call asked for
(``refvendor.received``); they are unsigned and expose nothing else.

The face models load once, in the lifespan, off the event loop.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from refvendor.azure import DEFAULT_KEY as DEFAULT_AZURE_KEY
from refvendor.azure import AzureFace, azure_router
from refvendor.compreface import DEFAULT_KEY as DEFAULT_COMPREFACE_KEY
from refvendor.compreface import CompreFace, compreface_router
from refvendor.errors import (
    ImageTooLargeException,
    InternalServerError,
    RekognitionError,
    SerializationException,
    UnknownOperationException,
)
from refvendor.faces import FaceEngine
from refvendor.operations import Rekognition
from refvendor.params import MAX_IMAGE_BYTES
from refvendor.received import Received
from refvendor.sigv4 import SigV4Verifier
from refvendor.store import CollectionStore

logger = logging.getLogger(__name__)

TARGET_PREFIX = "RekognitionService"
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE = "rekognition"

# Well-known credentials for a local test vendor, published on purpose so that
# tests and the demo agree on them without configuration.
DEFAULT_ACCESS_KEY_ID = "refvendor"
DEFAULT_SECRET_ACCESS_KEY = "refvendor-secret"  # noqa: S105

# The largest valid request is CompareFaces with two 5 MB images, base64
# encoded (4/3 larger); the rest is room for the JSON around them.
MAX_BODY_BYTES = 2 * (4 * -(-MAX_IMAGE_BYTES // 3)) + 64 * 1024


def create_app(
    *,
    access_key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY,
    region: str = "us-east-1",
    engine: FaceEngine | None = None,
    azure_key: str = DEFAULT_AZURE_KEY,
    compreface_key: str = DEFAULT_COMPREFACE_KEY,
) -> FastAPI:
    """The vendor, accepting requests signed with these credentials for ``region``.

    It also speaks Azure Face (``/face/<version>/...``, see ``refvendor.azure``) with
    ``azure_key`` and CompreFace (``/api/v1/...``, see ``refvendor.compreface``) with
    ``compreface_key``, over the same face engine.

    ``engine`` shares already loaded face models (they are thread-safe);
    without it the app loads its own at startup.
    """
    verifier = SigV4Verifier(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        region=region,
        service=SERVICE,
    )
    store = CollectionStore(region=region)
    calls: Counter[str] = Counter()
    received = Received()
    azure = AzureFace(key=azure_key)
    compreface = CompreFace(key=compreface_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = engine if engine is not None else await anyio.to_thread.run_sync(FaceEngine)
        app.state.rekognition = Rekognition(engine=loaded, store=store)
        azure.engine = compreface.engine = loaded
        yield

    app = FastAPI(
        title="facegate reference vendor (Rekognition JSON 1.1)",
        lifespan=lifespan,
        openapi_url=None,
    )
    app.state.calls = calls
    app.state.received = received
    app.state.store = store

    def count(name: str) -> None:
        calls[name] += 1

    app.include_router(azure_router(azure, count, received))
    app.include_router(compreface_router(compreface, count, received))

    @app.post("/")
    async def rekognition_endpoint(request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        service, _, operation = target.partition(".")
        calls[operation if service == TARGET_PREFIX else target] += 1
        try:
            rekognition: Rekognition = request.app.state.rekognition
            body = await _read_body(request)
            verifier.verify(
                method=request.method,
                path=(request.scope.get("raw_path") or b"/").decode("latin-1"),
                query=(request.scope.get("query_string") or b"").decode("latin-1"),
                headers=[
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in request.headers.raw
                ],
                body=body,
                now=datetime.now(UTC),
            )
            if service != TARGET_PREFIX or operation not in rekognition.operation_names:
                raise UnknownOperationException()
            document = _parse_json(body)
            received.rekognition(operation, document)
            result = await rekognition.call(operation, document)
        except RekognitionError as exc:
            return _error_response(exc)
        except Exception:
            # Reported as Rekognition reports its own failures; the traceback
            # stays in the log (request bodies, which hold images, never do).
            logger.exception("refvendor: %s failed", operation)
            return _error_response(InternalServerError("Internal server error"))
        return Response(
            content=json.dumps(result),
            media_type=CONTENT_TYPE,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    @app.get("/__refvendor/calls")
    async def call_counts() -> dict[str, int]:
        return dict(calls)

    @app.get("/__refvendor/requests")
    async def requests_received() -> list[dict[str, object]]:
        return received.all()

    return app


async def _read_body(request: Request) -> bytes:
    """The whole body, refusing to buffer more than any valid request holds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _body_too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _body_too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _body_too_large() -> ImageTooLargeException:
    return ImageTooLargeException(
        f"The request body exceeds {MAX_BODY_BYTES} bytes; images may be at most"
        f" {MAX_IMAGE_BYTES} bytes each"
    )


def _parse_json(body: bytes) -> dict[str, object]:
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        raise SerializationException("The request body is not valid JSON") from exc
    if not isinstance(document, dict):
        raise SerializationException("The request body must be a JSON object")
    return document


def _error_response(error: RekognitionError) -> Response:
    return JSONResponse(
        content=error.body(),
        status_code=error.status_code,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": str(uuid.uuid4()), "x-amzn-ErrorType": error.code},
    )
