"""The vendors file: what it must say, what an auditor sees, what the policy reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.auth.key_header import split_vendor_key, vendor_key
from gateway.config import Settings
from gateway.services import load_inventory
from gateway.vendors.inventory import InventoryError, Protocol, VendorInventory

GOOD = """
vendors:
  - name: azure-east
    protocol: azure
    base_url: https://east.example.com/
    credentials: {secret_env: AZURE_KEY}
    attestations:
      demographic_accuracy_test:
        date: 2025-06-30
        source: NIST FRTE 1:N
  - name: compreface
    protocol: compreface
    base_url: http://compreface.internal:8000
    collection: mugshots
    credentials: {secret_file: compreface.key}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vendors.yaml"
    path.write_text(text)
    (tmp_path / "compreface.key").write_text("cf-secret\n")
    return path


def test_a_good_file_loads_with_its_secrets_and_lists_none_of_them(tmp_path: Path) -> None:
    inventory = VendorInventory.load(write(tmp_path, GOOD), environ={"AZURE_KEY": "az-secret"})

    azure = inventory.get(Protocol.AZURE)
    compreface = inventory.get(Protocol.COMPREFACE)
    assert azure is not None and compreface is not None
    assert inventory.get(Protocol.REKOGNITION) is None
    assert azure.base_url == "https://east.example.com"
    assert azure.secret.get_secret_value() == "az-secret"
    assert compreface.secret.get_secret_value() == "cf-secret"
    listed = str([b.public_view() for b in inventory.backends])
    assert "az-secret" not in listed and "cf-secret" not in listed
    assert "env:AZURE_KEY" in listed
    assert azure.policy_view()["attestations"]["demographic_accuracy_test"]["date"] == (
        "2025-06-30T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("https://east.example.com/", "https://east.example.com/?x=1"), "base_url"),
        (("https://east.example.com/", "file:///etc/passwd"), "base_url"),
        (("https://east.example.com/", "https://user:pw@east.example.com"), "base_url"),
        (("    collection: mugshots\n", ""), "collection is required for compreface"),
        (("{secret_env: AZURE_KEY}", "{secret_env: NOT_SET}"), "NOT_SET is not set"),
        (("{secret_env: AZURE_KEY}", "{secret_env: AZURE_KEY, secret_file: x}"), "exactly one"),
        (("protocol: compreface", "protocol: azure"), "two backends speak azure"),
        (("source: NIST FRTE 1:N", "source: ''"), "source"),
        (("date: 2025-06-30", "date: last spring"), "date"),
        # Only a registered vendor's protocol: the registry says which exist.
        (("protocol: azure", "protocol: toy"), "vendors.0.protocol: .*rekognition, azure"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(InventoryError, match=complaint):
        VendorInventory.load(path, environ={"AZURE_KEY": "az-secret"})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="vendors_file"):
        VendorInventory.load(tmp_path / "nope.yaml")


def test_the_key_header_form_of_a_case_session() -> None:
    key = vendor_key("FGAKABC", "s3cr/t+==")
    assert key == "FGAKABC.s3cr/t+=="
    assert split_vendor_key(key) == ("FGAKABC", "s3cr/t+==")
    assert split_vendor_key("no-separator") is None
    assert split_vendor_key(".secret") is None
    assert split_vendor_key("id.") is None


def test_without_a_vendors_file_there_is_no_backend_unless_its_secret_is_given() -> None:
    # No default secret for a real vendor: unset, the settings describe no backend.
    assert load_inventory(Settings(_env_file=None)).backends == []  # type: ignore[call-arg]

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        rekognition_endpoint="https://rekognition.example.com",
        rekognition_access_key_id="AKIAEXAMPLE",
        rekognition_secret_access_key=SecretStr("from-the-admin"),
    )
    [backend] = load_inventory(settings).backends
    assert (backend.protocol, backend.base_url, backend.credentials.access_key_id) == (
        "rekognition",
        "https://rekognition.example.com",
        "AKIAEXAMPLE",
    )
    assert backend.secret.get_secret_value() == "from-the-admin"
    assert backend.public_view()["region"] == "us-east-1"


def test_a_secret_without_its_access_key_id_is_refused_naming_the_key() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        rekognition_secret_access_key=SecretStr("from-the-admin"),
    )
    with pytest.raises(InventoryError, match="rekognition_access_key_id"):
        load_inventory(settings)
