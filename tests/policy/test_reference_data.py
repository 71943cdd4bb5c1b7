"""Every operation that changes reference data is named in policies/data/roles.yaml.

A management operation left off the list would let an officer plant or delete faces
(issue 10, detour 8); a misspelt name there would protect nothing. Both are checked against
the adapters' own operation tables.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.operations import OperationKind
from gateway.vendors import azure, compreface, rekognition

ROLES = yaml.safe_load((Path(__file__).parents[2] / "policies/data/roles.yaml").read_text())
READS = ("List", "Get", "Describe")


def operations() -> dict[str, dict[str, OperationKind]]:
    return {
        "rekognition": {name: spec.kind for name, spec in rekognition.OPERATIONS.items()},
        "azure": {r.name: r.kind for r in azure.ROUTES},
        "compreface": {r.name: r.kind for r in compreface.ROUTES},
    }


def test_every_change_to_reference_data_needs_the_custodian_role() -> None:
    changes = ROLES["roles"]["reference_changes"]
    for vendor, kinds in operations().items():
        listed = set(changes[vendor])
        for name, kind in kinds.items():
            if kind is OperationKind.MANAGE and not name.startswith(READS):
                assert name in listed, f"{vendor} {name} changes reference data"
        assert listed <= set(kinds), f"{vendor}: not an operation: {listed - set(kinds)}"
        assert not {n for n in listed if n.startswith(READS)}, f"{vendor}: a read is listed"


def test_the_role_names_are_the_gateways() -> None:
    from gateway.auth.principals import Role

    roles = ROLES["roles"]
    assert {roles["admin"], roles["officer"], roles["custodian"]} <= {r.value for r in Role}
