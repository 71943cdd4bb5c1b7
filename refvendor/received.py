"""What the reference vendor received, call by call, for tests to hold the gateway to.

A gateway that judges one request and forwards another is caught only where the request
lands. So every call the vendor answers (or refuses) is summarised here from the bytes it
actually got, read as the vendor reads them: the match threshold, the result cap, the face
attributes asked for, the collection and the digests of the images. ``GET
/__refvendor/requests`` returns the list, oldest first; like ``/__refvendor/calls`` it is
unsigned and holds no image, only digests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

# Bounded: a long test session keeps the most recent calls only.
MAX_REMEMBERED = 10_000

_REKOGNITION_THRESHOLDS = ("FaceMatchThreshold", "SimilarityThreshold", "UserMatchThreshold")
_REKOGNITION_CAPS = ("MaxFaces", "MaxUsers")
_REKOGNITION_ATTRIBUTES = ("Attributes", "DetectionAttributes")
_REKOGNITION_IMAGES = ("Image", "SourceImage", "TargetImage")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Received:
    """The summaries, oldest first."""

    def __init__(self) -> None:
        self._calls: deque[dict[str, Any]] = deque(maxlen=MAX_REMEMBERED)

    def add(
        self,
        call: str,
        *,
        threshold: Any = None,
        max_results: Any = None,
        attributes: Iterable[str] = (),
        collection: Any = None,
        images: Iterable[bytes] = (),
    ) -> None:
        self._calls.append(
            {
                "call": call,
                "threshold": threshold,
                "max_results": max_results,
                "attributes": sorted(attributes),
                "collection": collection,
                "image_digests": [digest(image) for image in images],
            }
        )

    def all(self) -> list[dict[str, Any]]:
        return list(self._calls)

    def rekognition(self, operation: str, document: Mapping[str, object]) -> None:
        """A Rekognition JSON 1.1 request, as its body reads."""

        def first(names: tuple[str, ...]) -> Any:
            return next((document[n] for n in names if n in document), None)

        images = []
        for name in _REKOGNITION_IMAGES:
            image = document.get(name)
            encoded = image.get("Bytes") if isinstance(image, dict) else None
            if isinstance(encoded, str):
                try:
                    images.append(base64.b64decode(encoded, validate=True))
                except (binascii.Error, ValueError):
                    continue
        attributes = first(_REKOGNITION_ATTRIBUTES)
        collection = document.get("CollectionId")
        settings = document.get("Settings")
        threshold = first(_REKOGNITION_THRESHOLDS)
        if isinstance(settings, dict) and isinstance(settings.get("FaceSearch"), dict):
            collection = settings["FaceSearch"].get("CollectionId")
            threshold = settings["FaceSearch"].get("FaceMatchThreshold")
        self.add(
            operation,
            threshold=threshold,
            max_results=first(_REKOGNITION_CAPS),
            attributes=[str(a) for a in attributes] if isinstance(attributes, list) else (),
            collection=collection,
            images=images,
        )

    def azure(
        self, call: str, *, path_group: str | None, query: Mapping[str, str], body: bytes
    ) -> None:
        """An Azure Face request: the JSON body's fields, or the image stream's digest."""
        document: Any = {}
        images: list[bytes] = []
        if body.startswith(b"{"):
            try:
                document = json.loads(body)
            except ValueError:
                document = {}
        elif body:
            images.append(body)
        if not isinstance(document, dict):
            document = {}
        collection = path_group
        for key in ("largePersonGroupId", "personGroupId", "largeFaceListId", "faceListId"):
            if key in document:
                collection = document[key]
        attributes = query.get("returnFaceAttributes", "")
        self.add(
            f"azure:{call}",
            threshold=document.get("confidenceThreshold"),
            max_results=document.get("maxNumOfCandidatesReturned"),
            attributes=[a.strip() for a in attributes.split(",") if a.strip()],
            collection=collection,
            images=images,
        )

    def compreface(self, call: str, *, query: Mapping[str, str], files: Iterable[bytes]) -> None:
        """A CompreFace request: its query's options and the digests of its image parts."""
        plugins = query.get("face_plugins", "")
        count = query.get("prediction_count")
        self.add(
            f"compreface:{call}",
            max_results=int(count) if count is not None and count.isdigit() else count,
            attributes=[p.strip() for p in plugins.split(",") if p.strip()],
            images=files,
        )
