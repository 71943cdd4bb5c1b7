"""The normalised face operation: what every vendor adapter turns a native request into.

Policy, activity windows and the audit log only ever see this shape, so a guardrail
written once applies to every vendor.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class OperationKind(StrEnum):
    DETECT = "detect"  # find faces and attributes in one image (no identity)
    VERIFY = "verify"  # 1:1, is face A the same person as face B
    IDENTIFY = "identify"  # 1:N, search a reference collection for a probe face
    ENROLL = "enroll"  # add faces to a reference collection (builds a watchlist)
    MANAGE = "manage"  # create, list, delete collections and faces
    STREAM = "stream"  # video and real-time processing
    CELEBRITY = "celebrity"  # recognise public figures


class FaceSource(BaseModel):
    """Where a face named by id came from, as far as facegate saw it come back."""

    model_config = ConfigDict(frozen=True)

    face: str  # the namespaced face id, e.g. "rekognition:face:<FaceId>"
    probe: bool  # searched for (a probe), rather than searched among (a target)
    source: str | None = None  # the source image's identity; None: facegate never saw it
    faces_in_source: int | None = None  # faces that image held (None: unknown source)
    index_in_source: int | None = None  # its place among them in the vendor's answer


class ImageFacts(BaseModel):
    """What the gateway learned of one image of a request. Digests and counts, never pixels.

    `role` says what the image is to the call: "probe" (searched for, or analysed),
    "source" and "target" (a verification's two sides: the face to find, and the picture
    it is looked for in), "enrolment" (added to a reference collection).
    `identity` is the perceptual identity of its pixels (`gateway.context.identity`): the
    same picture re-encoded keeps it, where `digest` (SHA-256 of the bytes) changes.
    """

    model_config = ConfigDict(frozen=True)

    role: str
    digest: str  # "sha256:<hex>"
    identity: str | None = None  # "phash:<hex>"
    faces: int | None = None  # faces the gateway counted in it


def image_roles(kind: OperationKind, count: int) -> tuple[str, ...]:
    """The role of each of a request's `count` images, in the order the adapters list them.

    Every adapter lists a verification's images source first, then target (Rekognition
    SourceImage, TargetImage; CompreFace source_image, target_image).
    """
    if kind == OperationKind.VERIFY and count == 2:
        return ("source", "target")
    if kind == OperationKind.ENROLL:
        return ("enrolment",) * count
    return ("probe",) * count


class FaceOperation(BaseModel):
    """One vendor call, normalised. Carries digests of images, never the images."""

    model_config = ConfigDict(frozen=True)

    vendor: str
    name: str  # the vendor's native operation name, e.g. "SearchFacesByImage"
    kind: OperationKind
    collection: str | None = None  # the reference database searched or changed
    threshold: float | None = None  # match threshold as requested, normalised to 0-100
    max_results: int | None = None
    attributes: list[str] = Field(default_factory=list)  # requested face attributes
    probe_digests: list[str] = Field(default_factory=list)  # "sha256:<hex>" per image
    faces_in_probe: int | None = None  # the most faces in any one image (probe inspection)
    images: list[ImageFacts] = Field(default_factory=list)  # each image, when inspected
    # Stored identities the probe is compared against one by one (an Azure person, a
    # CompreFace example), as opaque namespaced ids such as
    # "azure:largepersongroup:<group>/person:<person>". A 1:N search names none: its kind
    # says it. Counted per case (activity stream distinct_identities): more identities than
    # a verification confirms is identification, whatever the operation is called.
    compared_identities: list[str] = Field(default_factory=list)
    # Faces the request names by an id a vendor handed out earlier (a Rekognition FaceId,
    # an Azure faceId, a CompreFace image_id), with where each came from: filled by step 3
    # from the face-source store (gateway/context/face_sources.py), never by a caller.
    face_sources: list[FaceSource] = Field(default_factory=list)
