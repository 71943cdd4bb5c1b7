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
    faces_in_probe: int | None = None  # filled by probe inspection when it runs
