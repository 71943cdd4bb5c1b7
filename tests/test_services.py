"""Services.build: one process's long-lived objects, wired to each other once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.migrate import upgrade_async
from gateway.services import Services
from refvendor.inventory import write_reference_inventory

REPO = Path(__file__).resolve().parents[1]


def settings_for(sqlite_url: str, tmp_path: Path, **overrides: object) -> Settings:
    fields: dict[str, object] = {
        "database_url": sqlite_url,
        "master_key_file": tmp_path / "master.key",
        "log_key_file": tmp_path / "log.key",
        "policy_dir": REPO / "policies",
    }
    return Settings(**(fields | overrides))  # type: ignore[arg-type]


async def test_one_adapter_per_backend_and_the_pipeline_shares_the_stores(
    sqlite_url: str, tmp_path: Path
) -> None:
    await upgrade_async(sqlite_url)
    inventory = write_reference_inventory(
        tmp_path / "vendors",
        "http://127.0.0.1:9",
        rekognition=("key", "secret"),
        azure_key="azure-key",
        compreface_key="compreface-key",
    )
    services = await Services.build(settings_for(sqlite_url, tmp_path, vendors_file=inventory))
    try:
        assert set(services.adapters) == {b.protocol for b in services.inventory.backends}
        assert len(services.adapters) == 3
        for protocol, adapter in services.adapters.items():
            assert adapter.backend.protocol == protocol
        pipeline = services.pipeline
        assert pipeline.audit is services.audit
        assert pipeline.policy is services.policy
        assert pipeline.activity is services.activity
        assert pipeline.face_sources is services.face_sources
        assert pipeline.inspector is services.inspector
    finally:
        await services.aclose()


async def test_a_bad_vendors_file_stops_startup_before_anything_is_opened(
    sqlite_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "vendors.yaml"
    broken.write_text("backends: [{name: x}]\n")
    with pytest.raises(Exception, match="vendors"):
        await Services.build(settings_for(sqlite_url, tmp_path, vendors_file=broken))
    assert not (tmp_path / "master.key").exists()
