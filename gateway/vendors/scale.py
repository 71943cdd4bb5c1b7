"""Match thresholds: one normalised 0-100 scale for the policy, each vendor's own on the wire.

The policy and the audit log speak one scale, 0-100, which is Rekognition's similarity
percentage. Adapters convert at the boundary, in both directions:

    vendor        wire field(s)                                wire scale   normalised
    rekognition   FaceMatchThreshold, SimilarityThreshold,      0-100        = wire
                  Similarity in matches
    azure         confidenceThreshold (identify), confidence    0-1          = wire * 100
                  in candidates, verify and findsimilars
    compreface    similarity in subjects and face_matches       0-1          = wire * 100

So `min_threshold: 99` in policies/data/obligations.yaml asks Rekognition for 99, Azure for
0.99 and CompreFace for 0.99. Each vendor computes its score its own way; the same number
on two vendors is the same floor on the wire, not the same error rate.
"""

from __future__ import annotations

from gateway.vendors.inventory import Protocol

_WIRE_MAX = {Protocol.REKOGNITION: 100.0, Protocol.AZURE: 1.0, Protocol.COMPREFACE: 1.0}


def to_wire(normalised: float, protocol: Protocol) -> float:
    return normalised * _WIRE_MAX[protocol] / 100.0


def from_wire(score: float, protocol: Protocol) -> float:
    return score * 100.0 / _WIRE_MAX[protocol]
