"""The vendor inventory: every backend the gateway forwards to, as the admin configured it.

One YAML file (Settings.vendors_file) lists each backend: its protocol, its base URL, where
its credentials come from, and attestations the policy reads. It is the only place a vendor
URL comes from; nothing in a request can name another host, so the gateway cannot be turned
into a client of an address the caller chose (SSRF).

    vendors:
      - name: azure-face-east
        protocol: azure                 # a registered vendor: rekognition | azure | compreface
        base_url: https://east.api.cognitive.microsoft.com
        credentials: {secret_env: FACEGATE_AZURE_KEY}        # or {secret_file: /run/secrets/x}
        attestations:
          demographic_accuracy_test:
            date: 2025-06-30
            source: NIST FRTE 1:N identification, demographic differentials
            url: https://pages.nist.gov/frvt/html/frvt_demographics.html

What else an entry must name is the vendor's own rule (`VendorDescriptor.check_backend`):
Rekognition backends also name `region` and `credentials.access_key_id`; a CompreFace key
belongs to one recognition service, whose face collection `collection` names. Secrets are
read once, at load, and never listed: an auditor sees where a secret comes from, not what it is.
"""

from __future__ import annotations

import os
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gateway import yaml_files
from gateway.errors import ConfigurationError


class InventoryError(ConfigurationError):
    """The vendors file is missing, unreadable or wrong; the message names the key."""


class Protocol(StrEnum):
    """The built-in vendors' protocol names, for code that names one (the demo, tests). What
    protocols exist is the registry's to say (gateway/vendors/__init__.py): a backend's
    `protocol` is any registered one."""

    REKOGNITION = "rekognition"
    AZURE = "azure"
    COMPREFACE = "compreface"


class Credentials(BaseModel):
    """Where a backend's secret comes from: an environment variable or a secrets file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str | None = None  # Rekognition only; not secret
    secret_env: str | None = None
    secret_file: Path | None = None

    def source(self) -> str:
        return f"env:{self.secret_env}" if self.secret_env else f"file:{self.secret_file}"


class Attestation(BaseModel):
    """A claim about a vendor's system, with where it comes from (e.g. NIST FRTE results)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: date
    source: str = Field(min_length=1)
    url: str | None = None
    summary: str | None = None


class VendorBackend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    protocol: str
    base_url: str
    region: str = "us-east-1"
    collection: str | None = None
    credentials: Credentials
    attestations: dict[str, Attestation] = Field(default_factory=dict)
    secret: SecretStr = Field(default=SecretStr(""), exclude=True)

    @field_validator("protocol")
    @classmethod
    def _registered(cls, value: str) -> str:
        # Imported here: the registry imports the vendor modules, which import this one.
        from gateway.vendors import REGISTRY

        if value not in REGISTRY:
            raise ValueError(f"must be one of {', '.join(REGISTRY)}")
        return str(value)

    @field_validator("base_url")
    @classmethod
    def _plain_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must not carry credentials, a query or a fragment")
        return value.rstrip("/")

    def policy_view(self) -> dict[str, Any]:
        """What the policy reads: `input.vendor`. Dates become RFC 3339 for time.parse_*."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "attestations": {
                kind: {
                    "date": f"{a.date.isoformat()}T00:00:00Z",
                    "source": a.source,
                    "url": a.url,
                }
                for kind, a in self.attestations.items()
            },
        }

    def public_view(self) -> dict[str, Any]:
        """What an auditor may list: everything but the secret itself."""
        from gateway.vendors import descriptor

        return {
            "name": self.name,
            "protocol": self.protocol,
            "base_url": self.base_url,
            "region": self.region if descriptor(self.protocol).uses_region else None,
            "collection": self.collection,
            "credentials_source": self.credentials.source(),
            "attestations": {
                kind: a.model_dump(mode="json") for kind, a in self.attestations.items()
            },
        }


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendors: list[VendorBackend]


class VendorInventory:
    """The configured backends, at most one per protocol (the protocol picks the route)."""

    def __init__(self, backends: list[VendorBackend]) -> None:
        self.backends = backends
        self._by_protocol: dict[str, VendorBackend] = {}
        for backend in backends:
            if backend.protocol in self._by_protocol:
                raise InventoryError(
                    f"vendors: two backends speak {backend.protocol}; "
                    "facegate routes by protocol, so list at most one of each"
                )
            self._by_protocol[backend.protocol] = backend
        if len({b.name for b in backends}) != len(backends):
            raise InventoryError("vendors: backend names must be unique")

    def get(self, protocol: str) -> VendorBackend | None:
        return self._by_protocol.get(protocol)

    @classmethod
    def load(cls, path: Path, *, environ: dict[str, str] | None = None) -> VendorInventory:
        """Read and check the file and every secret it points at; InventoryError names the key."""
        env = dict(os.environ) if environ is None else environ
        try:
            document = yaml_files.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InventoryError(f"vendors_file {path} cannot be read: {exc}") from exc
        try:
            parsed = _File.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InventoryError(f"{path}: {where}: {first['msg']}") from exc
        from gateway.vendors import descriptor

        backends = []
        for index, backend in enumerate(parsed.vendors):
            where = f"{path}: vendors.{index}.credentials"
            secret = _read_secret(backend.credentials, env=env, where=where, base=path.parent)
            complaint = descriptor(backend.protocol).check_backend(backend)
            if complaint is not None:
                raise InventoryError(f"{path}: vendors.{index}.{complaint}")
            backends.append(backend.model_copy(update={"secret": SecretStr(secret)}))
        return cls(backends)


def _read_secret(credentials: Credentials, *, env: dict[str, str], where: str, base: Path) -> str:
    if (credentials.secret_env is None) == (credentials.secret_file is None):
        raise InventoryError(f"{where}: give exactly one of secret_env and secret_file")
    if credentials.secret_env is not None:
        value = env.get(credentials.secret_env)
        if not value:
            raise InventoryError(f"{where}.secret_env: {credentials.secret_env} is not set")
        return value
    assert credentials.secret_file is not None
    secret_path = credentials.secret_file
    if not secret_path.is_absolute():
        secret_path = base / secret_path
    try:
        value = secret_path.read_text().strip()
    except OSError as exc:
        raise InventoryError(f"{where}.secret_file: {secret_path} cannot be read") from exc
    if not value:
        raise InventoryError(f"{where}.secret_file: {secret_path} is empty")
    return value
