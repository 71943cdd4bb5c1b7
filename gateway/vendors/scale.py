"""Match thresholds: one normalised 0-100 scale for the policy, each vendor's own on the wire.

The policy and the audit log speak one scale, 0-100, which is Rekognition's similarity
percentage. Adapters convert at the boundary, in both directions, with the `WireScale`
their descriptor names (`VendorDescriptor.scale`); docs/vendors.md tabulates which wire
fields each vendor scales:

    rekognition   0-100 (= wire)     azure, compreface   0-1 (= wire * 100)

So `min_threshold: 99` in policies/data/obligations.yaml asks Rekognition for 99, Azure for
0.99 and CompreFace for 0.99. Each vendor computes its score its own way; the same number
on two vendors is the same floor on the wire, not the same error rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WireScale:
    """A vendor's score scale on the wire: 0 to `maximum`."""

    maximum: float

    def to_wire(self, normalised: float) -> float:
        return normalised * self.maximum / 100.0

    def from_wire(self, score: float) -> float:
        return score * 100.0 / self.maximum


PERCENT = WireScale(100.0)
UNIT = WireScale(1.0)


def to_wire(normalised: float, protocol: str) -> float:
    """`normalised` on the wire scale of the registered vendor `protocol`."""
    return _scale(protocol).to_wire(normalised)


def from_wire(score: float, protocol: str) -> float:
    """A score of the registered vendor `protocol`, normalised to 0-100."""
    return _scale(protocol).from_wire(score)


def _scale(protocol: str) -> WireScale:
    # Imported here: the vendor modules import this one while the registry is being built.
    from gateway.vendors import descriptor

    return descriptor(protocol).scale
