"""A vendors file with the local reference vendor behind every built-in protocol.

For the demo, `facegate serve --refvendor`, the benchmarks and the tests: a gateway in
production reads the file its admin wrote (gateway/vendors/inventory.py). Light on purpose
(no face engine is imported), so that tests and benchmarks that point a gateway at some
other upstream can write one too.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml

from gateway.vendors.inventory import Protocol


def write_reference_inventory(
    directory: Path,
    url: str,
    *,
    rekognition: tuple[str, str],
    azure_key: str,
    compreface_key: str,
    attested_on: date | None = None,
) -> Path:
    """A vendors file with the local reference vendor behind all three protocols.

    For the demo, benchmarks and tests only. With `attested_on`, each backend carries a
    demographic accuracy attestation of that date whose source says plainly that it is not
    an independent test: the reference vendor has none, and identification through it is
    a demonstration, not evidence.
    """
    directory.mkdir(parents=True, exist_ok=True)
    attestations: dict[str, Any] = {}
    if attested_on is not None:
        attestations["demographic_accuracy_test"] = {
            "date": attested_on.isoformat(),
            "source": "facegate reference vendor: NOT an independent test (demo and tests only)",
        }
    access_key_id, secret_access_key = rekognition
    backends: list[dict[str, Any]] = []
    for protocol, secret in (
        (Protocol.REKOGNITION, secret_access_key),
        (Protocol.AZURE, azure_key),
        (Protocol.COMPREFACE, compreface_key),
    ):
        name = f"refvendor-{protocol.value}"
        secret_file = directory / f"{name}.secret"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        credentials: dict[str, Any] = {"secret_file": str(secret_file)}
        backend: dict[str, Any] = {
            "name": name,
            "protocol": protocol.value,
            "base_url": url,
            "credentials": credentials,
            "attestations": attestations,
        }
        if protocol is Protocol.REKOGNITION:
            credentials["access_key_id"] = access_key_id
        if protocol is Protocol.COMPREFACE:
            backend["collection"] = "mugshots"
        backends.append(backend)
    path = directory / "vendors.yaml"
    path.write_text(yaml.safe_dump({"vendors": backends}, sort_keys=False))
    return path
