"""The vendor's face collections, held in memory only.

A collection keeps, per indexed face, its 128-d descriptor and the metadata
Rekognition returns about it (ids, bounding box, confidence). No pixels are
kept: like Rekognition, the vendor stores features, not images. Everything is
gone when the process exits.

Not thread-safe, by design: the app touches the store only from its event
loop, and the dlib work that runs in worker threads never sees it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from refvendor.errors import ResourceAlreadyExistsException, ResourceNotFoundException
from refvendor.faces import Descriptor, distances

# The account in the ARNs this vendor makes up; no AWS account is involved.
ACCOUNT_ID = "000000000000"


@dataclass(frozen=True, slots=True, eq=False)
class StoredFace:
    """One indexed face. ``bounding_box`` holds Rekognition's ratios of the source image."""

    face_id: str
    image_id: str
    external_image_id: str | None
    bounding_box: Mapping[str, float]
    confidence: float
    descriptor: Descriptor
    sequence: int  # position in indexing order; ListFaces pages by it


class Collection:
    def __init__(self, *, collection_id: str, arn: str) -> None:
        self.collection_id = collection_id
        self.arn = arn
        self.created_at = datetime.now(UTC)
        self._faces: dict[str, StoredFace] = {}
        self._sequence = itertools.count()

    @property
    def face_count(self) -> int:
        return len(self._faces)

    def add(
        self,
        *,
        image_id: str,
        external_image_id: str | None,
        bounding_box: Mapping[str, float],
        confidence: float,
        descriptor: Descriptor,
    ) -> StoredFace:
        face = StoredFace(
            face_id=str(uuid.uuid4()),
            image_id=image_id,
            external_image_id=external_image_id,
            bounding_box=dict(bounding_box),
            confidence=confidence,
            descriptor=descriptor,
            sequence=next(self._sequence),
        )
        self._faces[face.face_id] = face
        return face

    def get(self, face_id: str) -> StoredFace | None:
        return self._faces.get(face_id)

    def faces(self, *, after: int = -1) -> list[StoredFace]:
        """Faces in indexing order, those with ``sequence > after`` only."""
        # Dicts keep insertion order, which is sequence order.
        return [face for face in self._faces.values() if face.sequence > after]

    def delete(self, face_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Remove faces; returns (deleted ids, ids that were not in the collection)."""
        deleted: list[str] = []
        missing: list[str] = []
        for face_id in face_ids:
            if self._faces.pop(face_id, None) is None:
                missing.append(face_id)
            else:
                deleted.append(face_id)
        return deleted, missing

    def nearest(
        self, descriptor: Descriptor, *, exclude: str | None = None
    ) -> list[tuple[StoredFace, float]]:
        """Every face but ``exclude`` with its distance to ``descriptor``, nearest first."""
        candidates = [face for face in self._faces.values() if face.face_id != exclude]
        if not candidates:
            return []
        matrix = np.stack([face.descriptor for face in candidates])
        found = distances(descriptor, matrix)
        order = np.argsort(found, kind="stable")
        return [(candidates[i], float(found[i])) for i in order]


class CollectionStore:
    def __init__(self, *, region: str) -> None:
        self._region = region
        self._collections: dict[str, Collection] = {}

    def create(self, collection_id: str) -> Collection:
        if collection_id in self._collections:
            raise ResourceAlreadyExistsException(
                f"The collection id: {collection_id} already exists"
            )
        # Rekognition's collection ARNs really do lack the "arn:" prefix.
        arn = f"aws:rekognition:{self._region}:{ACCOUNT_ID}:collection/{collection_id}"
        collection = Collection(collection_id=collection_id, arn=arn)
        self._collections[collection_id] = collection
        return collection

    def get(self, collection_id: str) -> Collection:
        collection = self._collections.get(collection_id)
        if collection is None:
            raise ResourceNotFoundException(f"The collection id: {collection_id} does not exist")
        return collection

    def delete(self, collection_id: str) -> None:
        self.get(collection_id)
        del self._collections[collection_id]

    def ids(self) -> list[str]:
        return sorted(self._collections)
