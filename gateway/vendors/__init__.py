"""Vendor protocols, and the registry of them: one module per vendor, one line here each.

Each vendor module (or small package) exports one `VendorDescriptor` (gateway/vendors/base.py):
how its requests are recognised, how its callers authenticate, its wire scale, how its
adapter is built from an inventory entry. Services, routing, scale and the inventory read
them from `REGISTRY`; nothing outside a vendor's module branches on the vendor.
"""

from __future__ import annotations

from gateway.vendors import azure, compreface, rekognition
from gateway.vendors.base import VendorDescriptor

REGISTRY: dict[str, VendorDescriptor] = {
    entry.protocol: entry
    for entry in (
        rekognition.DESCRIPTOR,
        azure.DESCRIPTOR,
        compreface.DESCRIPTOR,
    )
}


def descriptor(protocol: str) -> VendorDescriptor:
    """The registered vendor speaking `protocol`; KeyError names it when none does."""
    try:
        return REGISTRY[protocol]
    except KeyError:
        raise KeyError(f"no vendor protocol {protocol!r} is registered") from None


def recognise(method: str, path: str) -> VendorDescriptor | None:
    """The registered vendor whose protocol a request speaks, or None (facegate's routes)."""
    for candidate in REGISTRY.values():
        if candidate.recognises(method, path):
            return candidate
    return None
