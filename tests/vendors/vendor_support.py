"""Adapters built for parsing and filtering only: nothing here opens a socket."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from gateway.auth.secrets import MasterKey
from gateway.requests import IncomingRequest
from gateway.vendors.azure import AzureFaceAdapter
from gateway.vendors.compreface import CompreFaceAdapter
from gateway.vendors.inventory import Credentials, Protocol, VendorBackend
from gateway.vendors.rekognition import RekognitionAdapter

IMAGE = b"\xff\xd8\xff" + b"probe" * 10
MASTER = MasterKey(b"k" * 32)


def backend(protocol: Protocol) -> VendorBackend:
    return VendorBackend(
        name=f"test-{protocol.value}",
        protocol=protocol,
        base_url="http://vendor.invalid",
        collection="mugshots" if protocol is Protocol.COMPREFACE else None,
        credentials=Credentials(access_key_id="AK", secret_env="UNUSED"),
        secret=SecretStr("vendor-secret"),
    )


def adapters() -> dict[Protocol, Any]:
    limits = {"max_image_bytes": 1024 * 1024, "timeout_seconds": 1.0}
    return {
        Protocol.REKOGNITION: RekognitionAdapter(
            backend=backend(Protocol.REKOGNITION),
            **limits,  # type: ignore[arg-type]
        ),
        Protocol.AZURE: AzureFaceAdapter(
            backend=backend(Protocol.AZURE),
            **limits,  # type: ignore[arg-type]
        ),
        Protocol.COMPREFACE: CompreFaceAdapter(
            backend=backend(Protocol.COMPREFACE),
            **limits,  # type: ignore[arg-type]
        ),
    }


def request(
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> IncomingRequest:
    return IncomingRequest(
        request_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC),
        method=method,
        path=path,
        query=query,
        headers=headers or {},
        body=body,
        client_address="127.0.0.1",
    )


def multipart(**files: bytes) -> tuple[bytes, str]:
    boundary = "facegate-test-boundary"
    parts = b""
    for name, data in files.items():
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def identify_requests(threshold: float, max_results: int) -> dict[Protocol, IncomingRequest]:
    """One identification, the same in meaning, in each vendor's own words.

    `threshold` is normalised (0-100); each request states it on its vendor's scale. Azure
    identifies a faceId from an earlier detect, and CompreFace has no request threshold.
    """
    body, content_type = multipart(file=IMAGE)
    return {
        Protocol.REKOGNITION: request(
            "POST",
            "/",
            body=json.dumps(
                {
                    "CollectionId": "mugshots",
                    "Image": {"Bytes": base64.b64encode(IMAGE).decode()},
                    "FaceMatchThreshold": threshold,
                    "MaxFaces": max_results,
                }
            ).encode(),
            headers={"x-amz-target": "RekognitionService.SearchFacesByImage"},
        ),
        Protocol.AZURE: request(
            "POST",
            "/face/v1.2-preview.1/identify",
            body=json.dumps(
                {
                    "faceIds": ["f-1"],
                    "largePersonGroupId": "mugshots",
                    "confidenceThreshold": threshold / 100,
                    "maxNumOfCandidatesReturned": max_results,
                }
            ).encode(),
            headers={"content-type": "application/json"},
        ),
        Protocol.COMPREFACE: request(
            "POST",
            "/api/v1/recognition/recognize",
            query=f"&limit=0&prediction_count={max_results}&status=True",
            body=body,
            headers={"content-type": content_type},
        ),
    }
