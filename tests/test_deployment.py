"""compose.yaml and the Dockerfile, checked without a container engine (none runs where
facegate is developed): the services and their order, health checks, volumes, and that
every FACEGATE_* setting the deployment passes is one gateway/config.py reads, parses
there, and that what a two-replica deployment needs is set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Settings

REPO = Path(__file__).resolve().parents[1]
REPLICAS = ("gateway-1", "gateway-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return document


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolated(value: str) -> str:
    """Compose's ${NAME:-default} as its default, ${NAME} and ${NAME:?error} as a stand-in."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", "secret", value)


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_the_services_and_the_order_they_start_in(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "opa", "migrate", *REPLICAS, "proxy"}
    assert services["opa"]["image"].startswith("openpolicyagent/opa:")
    assert depends(services["migrate"]) == {"postgres": "service_healthy"}
    for name in REPLICAS:
        assert depends(services[name]) == {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "opa": "service_healthy",
        }
        assert "ports" not in services[name]  # reached through the proxy only
    assert depends(services["proxy"]) == dict.fromkeys(REPLICAS, "service_healthy")
    # One port for clients.
    published = [s for s in services.values() if s.get("ports")]
    assert published == [services["proxy"]]
    assert services["proxy"]["ports"] == ["8080:8080"]
    assert services["migrate"]["command"] == ["facegate", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "migrate":
            assert service["healthcheck"] == {"disable": True}
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    for name in REPLICAS:
        # Readiness, not liveness: the proxy starts once the replicas can serve.
        assert "/facegate/ready" in " ".join(compose["services"][name]["healthcheck"]["test"])


def test_every_facegate_setting_is_one_config_reads_and_parses(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name, service in compose["services"].items():
        env = {k: v for k, v in environment(service).items() if k.startswith("FACEGATE_")}
        unknown = [k for k in env if k.removeprefix("FACEGATE_").lower() not in fields]
        assert not unknown, f"{name}: {unknown} are not settings in gateway/config.py"
        # Each value parses as its setting does at start.
        Settings.model_validate(
            {k.removeprefix("FACEGATE_").lower(): interpolated(v) for k, v in env.items()}
        )


def test_the_replicas_have_what_two_replicas_need(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in REPLICAS:
        env = {k: interpolated(v) for k, v in environment(services[name]).items()}
        settings = Settings.model_validate(
            {k.removeprefix("FACEGATE_").lower(): v for k, v in env.items() if "FACEGATE_" in k}
        )
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in settings.database_url
        assert settings.redis_url == "redis://redis:6379/0"
        assert (settings.policy_engine, settings.opa_url) == ("opa", "http://opa:8181")
        assert settings.migrate_on_start is False  # the migrate job did it once
        assert settings.host == "0.0.0.0"
        # Both keys on the shared keys volume.
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts["/var/lib/facegate/keys"] == "keys"
        for key_file in (settings.log_key_file, settings.master_key_file):
            assert key_file.parent == Path("/var/lib/facegate/keys")
        assert mounts["/etc/facegate/vendors.yaml"] == "./deploy/vendors.yaml"
        assert settings.vendors_file == Path("/etc/facegate/vendors.yaml")
        # The stop grace outlasts the drain.
        grace = int(services[name]["stop_grace_period"].rstrip("s"))
        assert grace > settings.shutdown_grace_seconds
    assert {"pgdata", "redisdata", "keys"} <= set(compose["volumes"])
    # The migration job reaches the same database as the replicas.
    assert (
        environment(services["migrate"])["FACEGATE_DATABASE_URL"]
        == environment(services["gateway-1"])["FACEGATE_DATABASE_URL"]
    )


def test_the_proxy_sends_to_both_replicas_with_the_signed_host() -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    for name in REPLICAS:
        assert f"server {name}:8080" in conf
    assert "proxy_set_header Host $http_host;" in conf  # SigV4 signs the client's Host
    assert "location = /metrics { return 404; }" in conf


def test_the_image_runs_as_a_user_with_a_health_check() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*/facegate/health", dockerfile, re.MULTILINE)
    assert "chown facegate:facegate /var/lib/facegate/keys" in dockerfile


def test_the_example_inventory_is_one_the_gateway_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.vendors.inventory import VendorInventory

    monkeypatch.setenv("REKOGNITION_SECRET_ACCESS_KEY", "example")
    inventory = VendorInventory.load(REPO / "deploy" / "vendors.example.yaml")
    assert [b.protocol for b in inventory.backends] == ["rekognition"]
