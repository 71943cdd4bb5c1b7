"""Rekognition's operations, over the face engine and the in-memory store.

Each operation takes a request's JSON object and returns the response's,
shaped as Rekognition's API reference documents it, so that botocore's
service model parses it unchanged. Failures are raised as
``refvendor.errors.RekognitionError``.

What is computed, and so returned: face bounding boxes, detector confidence,
landmarks (eye corners, eye centres, base of the nose) and similarities.
Nothing else is, so nothing else is made up: ``Attributes`` DEFAULT and ALL
both return these, and asking for anything specific (AGE_RANGE, EMOTIONS, ...)
is an InvalidParameterException rather than an answer that silently lacks it.
``QualityFilter`` is validated but filters nothing, since no quality model
exists here; faces are only filtered by the detector's own threshold (see
``refvendor.faces``).

Decoding and dlib run in a worker thread, so the event loop keeps serving
(between descriptor computations, which hold the GIL; see FaceEngine). The
store is touched only on the event loop, before and after that wait; a
collection is looked up again after it, since it may have been deleted
meanwhile.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from refvendor.errors import (
    ImageTooLargeException,
    InvalidImageFormatException,
    InvalidPaginationTokenException,
    InvalidParameterException,
    UnknownOperationException,
)
from refvendor.faces import (
    Box,
    Descriptor,
    Face,
    FaceEngine,
    ImageTooLarge,
    InvalidImage,
    decode_image,
    distances,
    similarity,
)
from refvendor.params import (
    COLLECTION_ID,
    EXTERNAL_IMAGE_ID,
    FACE_ID,
    USER_ID,
    Params,
)
from refvendor.store import Collection, CollectionStore, StoredFace

JSON = dict[str, Any]

# The model behind the descriptors is dlib_face_recognition_resnet_model_v1;
# this is its version, not one of Rekognition's face model versions.
FACE_MODEL_VERSION = "1.0"

MAX_FACES_PER_IMAGE = 100  # Rekognition detects the 100 largest faces
DEFAULT_MATCH_THRESHOLD = 80.0
DEFAULT_SEARCH_MAX_FACES = 80
DEFAULT_PAGE_SIZE = 1000
NO_FACE_MESSAGE = "There are no faces in the image. Should be at least 1."

ATTRIBUTES = (
    "DEFAULT",
    "ALL",
    "AGE_RANGE",
    "BEARD",
    "EMOTIONS",
    "EYE_DIRECTION",
    "EYEGLASSES",
    "EYES_OPEN",
    "GENDER",
    "MOUTH_OPEN",
    "MUSTACHE",
    "FACE_OCCLUDED",
    "SMILE",
    "SUNGLASSES",
)
QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")
PAGINATION_TOKEN = re.compile(r"[\s\S]{1,255}")


@dataclass(frozen=True, slots=True)
class _Analysis:
    """What the worker thread found in one image."""

    width: int
    height: int
    faces: list[Face]  # largest first, at most MAX_FACES_PER_IMAGE
    descriptors: list[Descriptor]  # of faces[: len(descriptors)]


def _analyze_image(engine: FaceEngine, data: bytes, describe: int) -> _Analysis:
    """Decode, detect, and describe the ``describe`` largest faces (runs in a worker thread)."""
    try:
        image = decode_image(data)
    except ImageTooLarge as exc:
        raise ImageTooLargeException(str(exc)) from exc
    except InvalidImage as exc:
        raise InvalidImageFormatException("Request has invalid image format") from exc
    faces = engine.detect(image)[:MAX_FACES_PER_IMAGE]
    descriptors = [engine.describe(image, face) for face in faces[:describe]]
    return _Analysis(image.width, image.height, faces, descriptors)


def _bounding_box(box: Box, width: int, height: int) -> JSON:
    return {
        "Width": box.width / width,
        "Height": box.height / height,
        "Left": box.left / width,
        "Top": box.top / height,
    }


def _face_detail(face: Face, width: int, height: int) -> JSON:
    """A FaceDetail (and equally a ComparedFace): only the measured members."""
    return {
        "BoundingBox": _bounding_box(face.box, width, height),
        "Landmarks": [
            {"Type": mark.type, "X": mark.x / width, "Y": mark.y / height}
            for mark in face.landmarks
        ],
        "Confidence": face.confidence,
    }


def _stored_face(face: StoredFace, *, with_model_version: bool = True) -> JSON:
    document: JSON = {
        "FaceId": face.face_id,
        "BoundingBox": dict(face.bounding_box),
        "ImageId": face.image_id,
        "Confidence": face.confidence,
    }
    if face.external_image_id is not None:
        document["ExternalImageId"] = face.external_image_id
    # IndexFaces' FaceRecords leave the model version out; listings and matches carry it.
    if with_model_version:
        document["IndexFacesModelVersion"] = FACE_MODEL_VERSION
    return document


def _face_matches(
    nearest: list[tuple[StoredFace, float]], *, threshold: float, max_faces: int
) -> list[JSON]:
    matches: list[JSON] = []
    for face, distance in nearest:  # nearest first, so similarity only falls
        score = similarity(distance)
        if score < threshold or len(matches) == max_faces:
            break
        matches.append({"Similarity": score, "Face": _stored_face(face)})
    return matches


def _check_attributes(params: Params, name: str) -> None:
    requested = params.choice_list(name, choices=ATTRIBUTES)
    unsupported = [value for value in requested if value not in ("DEFAULT", "ALL")]
    if unsupported:
        raise InvalidParameterException(
            f"{name} {', '.join(unsupported)} cannot be computed by the reference vendor,"
            " which measures only BoundingBox, Confidence and Landmarks; ask for DEFAULT or ALL"
        )


def _page_start(token: str | None) -> int:
    """The ``after`` sequence number a ListFaces NextToken stands for."""
    if token is None:
        return -1
    if not token.isdigit():
        raise InvalidPaginationTokenException("Invalid pagination token")
    return int(token)


Operation = Callable[[Params], Awaitable[JSON]]


class Rekognition:
    """The operations, by name, over one engine and one store."""

    def __init__(self, *, engine: FaceEngine, store: CollectionStore) -> None:
        self._engine = engine
        self._store = store
        self._operations: dict[str, Operation] = {
            "CreateCollection": self.create_collection,
            "DeleteCollection": self.delete_collection,
            "ListCollections": self.list_collections,
            "DescribeCollection": self.describe_collection,
            "IndexFaces": self.index_faces,
            "ListFaces": self.list_faces,
            "DeleteFaces": self.delete_faces,
            "SearchFacesByImage": self.search_faces_by_image,
            "SearchFaces": self.search_faces,
            "CompareFaces": self.compare_faces,
            "DetectFaces": self.detect_faces,
        }

    @property
    def operation_names(self) -> frozenset[str]:
        return frozenset(self._operations)

    async def call(self, operation: str, request: Mapping[str, object]) -> JSON:
        handler = self._operations.get(operation)
        if handler is None:
            raise UnknownOperationException()
        return await handler(Params(request))

    async def _analyze(self, data: bytes, *, describe: int) -> _Analysis:
        work = functools.partial(_analyze_image, self._engine, data, describe)
        return await anyio.to_thread.run_sync(work)

    def _collection(self, params: Params) -> Collection:
        return self._store.get(params.required_string("CollectionId", pattern=COLLECTION_ID))

    async def create_collection(self, params: Params) -> JSON:
        # Tags are accepted and not kept: nothing here reads them back.
        collection = self._store.create(
            params.required_string("CollectionId", pattern=COLLECTION_ID)
        )
        return {
            "StatusCode": 200,
            "CollectionArn": collection.arn,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    async def delete_collection(self, params: Params) -> JSON:
        self._store.delete(params.required_string("CollectionId", pattern=COLLECTION_ID))
        return {"StatusCode": 200}

    async def list_collections(self, params: Params) -> JSON:
        # A NextToken is the first collection id of the next page.
        token = params.optional_string("NextToken", pattern=PAGINATION_TOKEN)
        size = params.integer("MaxResults", default=DEFAULT_PAGE_SIZE, minimum=0, maximum=4096)
        ids = [cid for cid in self._store.ids() if token is None or cid >= token]
        page = ids[:size]
        response: JSON = {
            "CollectionIds": page,
            "FaceModelVersions": [FACE_MODEL_VERSION] * len(page),
        }
        if len(ids) > size and page:  # an empty page with a token would loop forever
            response["NextToken"] = ids[size]
        return response

    async def describe_collection(self, params: Params) -> JSON:
        collection = self._collection(params)
        return {
            "FaceCount": collection.face_count,
            "FaceModelVersion": FACE_MODEL_VERSION,
            "CollectionARN": collection.arn,
            "CreationTimestamp": collection.created_at.timestamp(),
            "UserCount": 0,
        }

    async def index_faces(self, params: Params) -> JSON:
        collection_id = self._collection(params).collection_id
        data = params.image("Image")
        external_image_id = params.optional_string("ExternalImageId", pattern=EXTERNAL_IMAGE_ID)
        max_faces = params.integer(
            "MaxFaces", default=MAX_FACES_PER_IMAGE, minimum=1, maximum=2**31 - 1
        )
        _check_attributes(params, "DetectionAttributes")
        params.choice("QualityFilter", choices=QUALITY_FILTERS, default="AUTO")

        analysis = await self._analyze(data, describe=max_faces)
        collection = self._store.get(collection_id)
        image_id = str(uuid.uuid4())
        records: list[JSON] = []
        for face, descriptor in zip(analysis.faces, analysis.descriptors, strict=False):
            stored = collection.add(
                image_id=image_id,
                external_image_id=external_image_id,
                bounding_box=_bounding_box(face.box, analysis.width, analysis.height),
                confidence=face.confidence,
                descriptor=descriptor,
            )
            records.append(
                {
                    "Face": _stored_face(stored, with_model_version=False),
                    "FaceDetail": _face_detail(face, analysis.width, analysis.height),
                }
            )
        unindexed = [
            {
                "Reasons": ["EXCEEDS_MAX_FACES"],
                "FaceDetail": _face_detail(face, analysis.width, analysis.height),
            }
            for face in analysis.faces[len(analysis.descriptors) :]
        ]
        return {
            "FaceRecords": records,
            "FaceModelVersion": FACE_MODEL_VERSION,
            "UnindexedFaces": unindexed,
        }

    async def list_faces(self, params: Params) -> JSON:
        collection = self._collection(params)
        after = _page_start(params.optional_string("NextToken", pattern=PAGINATION_TOKEN))
        size = params.integer("MaxResults", default=DEFAULT_PAGE_SIZE, minimum=0, maximum=4096)
        wanted = params.string_list("FaceIds", pattern=FACE_ID, max_items=4096)
        user_id = params.optional_string("UserId", pattern=USER_ID)

        faces = collection.faces(after=after)
        if wanted is not None:
            wanted_ids = set(wanted)
            faces = [face for face in faces if face.face_id in wanted_ids]
        if user_id is not None:
            faces = []  # no face here is ever associated with a user
        page = faces[:size]
        response: JSON = {
            "Faces": [_stored_face(face) for face in page],
            "FaceModelVersion": FACE_MODEL_VERSION,
        }
        if len(faces) > size and page:
            response["NextToken"] = str(page[-1].sequence)
        return response

    async def delete_faces(self, params: Params) -> JSON:
        collection = self._collection(params)
        face_ids = params.string_list("FaceIds", pattern=FACE_ID, required=True, max_items=4096)
        deleted, missing = collection.delete(face_ids or [])
        return {
            "DeletedFaces": deleted,
            "UnsuccessfulFaceDeletions": [
                {"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]} for face_id in missing
            ],
        }

    async def search_faces_by_image(self, params: Params) -> JSON:
        collection_id = self._collection(params).collection_id
        data = params.image("Image")
        max_faces = params.integer(
            "MaxFaces", default=DEFAULT_SEARCH_MAX_FACES, minimum=1, maximum=4096
        )
        threshold = params.percent("FaceMatchThreshold", default=DEFAULT_MATCH_THRESHOLD)
        params.choice("QualityFilter", choices=QUALITY_FILTERS, default="NONE")

        # Like Rekognition, only the largest face in the image is searched for.
        analysis = await self._analyze(data, describe=1)
        if not analysis.faces:
            raise InvalidParameterException(NO_FACE_MESSAGE)
        searched = analysis.faces[0]
        collection = self._store.get(collection_id)
        return {
            "SearchedFaceBoundingBox": _bounding_box(searched.box, analysis.width, analysis.height),
            "SearchedFaceConfidence": searched.confidence,
            "FaceMatches": _face_matches(
                collection.nearest(analysis.descriptors[0]),
                threshold=threshold,
                max_faces=max_faces,
            ),
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    async def search_faces(self, params: Params) -> JSON:
        collection = self._collection(params)
        face_id = params.required_string("FaceId", pattern=FACE_ID)
        max_faces = params.integer(
            "MaxFaces", default=DEFAULT_SEARCH_MAX_FACES, minimum=1, maximum=4096
        )
        threshold = params.percent("FaceMatchThreshold", default=DEFAULT_MATCH_THRESHOLD)
        searched = collection.get(face_id)
        if searched is None:
            # What Rekognition answers, rather than ResourceNotFoundException.
            raise InvalidParameterException("faceId was not found in the collection.")
        return {
            "SearchedFaceId": face_id,
            "FaceMatches": _face_matches(
                collection.nearest(searched.descriptor, exclude=face_id),
                threshold=threshold,
                max_faces=max_faces,
            ),
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    async def compare_faces(self, params: Params) -> JSON:
        source_data = params.image("SourceImage")
        target_data = params.image("TargetImage")
        threshold = params.percent("SimilarityThreshold", default=DEFAULT_MATCH_THRESHOLD)
        params.choice("QualityFilter", choices=QUALITY_FILTERS, default="NONE")

        source = await self._analyze(source_data, describe=1)
        if not source.faces:
            raise InvalidParameterException(NO_FACE_MESSAGE)
        target = await self._analyze(target_data, describe=MAX_FACES_PER_IMAGE)

        matches: list[JSON] = []
        unmatched: list[JSON] = []
        reference = source.descriptors[0]
        found = distances(reference, np.asarray(target.descriptors, dtype=np.float64))
        for face, distance in zip(target.faces, found, strict=True):
            score = similarity(float(distance))
            detail = _face_detail(face, target.width, target.height)
            if score >= threshold:
                matches.append({"Similarity": score, "Face": detail})
            else:
                unmatched.append(detail)
        matches.sort(key=lambda match: float(match["Similarity"]), reverse=True)
        searched = source.faces[0]
        return {
            "SourceImageFace": {
                "BoundingBox": _bounding_box(searched.box, source.width, source.height),
                "Confidence": searched.confidence,
            },
            "FaceMatches": matches,
            "UnmatchedFaces": unmatched,
        }

    async def detect_faces(self, params: Params) -> JSON:
        data = params.image("Image")
        _check_attributes(params, "Attributes")
        analysis = await self._analyze(data, describe=0)
        return {
            "FaceDetails": [
                _face_detail(face, analysis.width, analysis.height) for face in analysis.faces
            ]
        }
