"""The one typed settings object: built by the entry point, passed in, never read at import."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Rekognition accepts at most 5 MB of image bytes; base64 in JSON inflates that by 4/3.
REKOGNITION_MAX_IMAGE_BYTES = 5 * 1024 * 1024


class Settings(BaseSettings):
    """Every setting can be given as an environment variable FACEGATE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FACEGATE_", env_file=".env", extra="ignore")

    # Where the gateway listens.
    host: str = "127.0.0.1"
    port: int = 8080

    # One database for the audit log, principals, sessions and warrants.
    database_url: str = "sqlite+aiosqlite:///./facegate.db"
    # `facegate serve` applies the migrations first; off where a one-shot job does it once
    # before the replicas start (compose.yaml's `migrate`), so replicas never race on it.
    migrate_on_start: bool = True

    # Secret material. The master key derives every session secret (see auth/secrets.py).
    master_key_file: Path = Path("facegate-master.key")

    # The audit log: its Ed25519 signing key (made by `facegate keys init-log`, or on first
    # start, mode 0600) and its origin, the name its checkpoints and key carry: a
    # schema-less URL naming this deployment's log, e.g. "police.example.gov/facegate".
    log_key_file: Path = Path("facegate-log.key")
    log_origin: str = "facegate.local/audit"

    # Policy.
    policy_dir: Path = Path("policies")
    policy_engine: Literal["embedded", "opa"] = "embedded"
    opa_url: str | None = None  # an OPA server; unset with policy_engine=opa starts `opa run`
    policy_timeout_seconds: float = 1.0

    # Case sessions and request authentication.
    session_ttl: timedelta = timedelta(hours=8)
    session_max_ttl: timedelta = timedelta(hours=24)
    max_clock_skew: timedelta = timedelta(minutes=15)
    # A console sign-in (gateway/console/) lasts this long; sign-out ends it sooner.
    console_session_ttl: timedelta = timedelta(hours=8)
    max_body_bytes: int = REKOGNITION_MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
    # A client has this long to send its whole body (vendor protocols and the management
    # API): one whose chunked body stops is answered 400 and recorded, not waited on.
    client_read_timeout_seconds: float = 30.0
    # The management API's bodies (principals, warrants, sessions) are small; a larger one
    # is refused before it is read, and only after its sender has authenticated.
    management_max_body_bytes: int = 1024 * 1024
    max_image_bytes: int = REKOGNITION_MAX_IMAGE_BYTES

    # The vendor inventory (see gateway/vendors/inventory.py): every backend, its base URL,
    # credentials source and attestations. Unset, the inventory is the one Rekognition
    # backend below, with no attestations (so the starting policy refuses identification).
    vendors_file: Path | None = None

    # The Rekognition backend when there is no vendors file, read by the Rekognition
    # vendor's descriptor (gateway/vendors/rekognition.py). The URL is fixed here by the
    # admin, never taken from a request. There is no default secret: without one there is
    # no such backend (the reference vendor's boot code passes its own).
    rekognition_endpoint: str = "http://127.0.0.1:9090"
    rekognition_region: str = "us-east-1"
    rekognition_access_key_id: str | None = None
    rekognition_secret_access_key: SecretStr | None = None
    # The deadline of a whole forward, connecting to the last byte of the vendor's answer
    # (each read is bounded by it too): past it the request ends as an upstream error.
    upstream_timeout_seconds: float = 30.0

    # Probe inspection (step 3): every probe image is decoded and its faces counted.
    probe_inspection: bool = True
    probe_max_pixels: int = 25_000_000  # checked against the header, before decoding
    probe_inspection_workers: int = 2
    # auto: libfacedetection's CNN where its wheel installs (Linux x86_64), else dlib's HOG.
    probe_detector: Literal["auto", "cnn", "hog"] = "auto"
    # The smallest face (pixels wide, as stored) the CNN must count in a frame of any size;
    # smaller costs more (docs/patterns.md has the figures). HOG's is 80, fixed.
    probe_min_face: int = Field(default=48, ge=8)  # face_detection.DEFAULT_MIN_FACE

    # Activity windows: in-process when unset (one replica only), else shared in Redis.
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0
    activity_key_prefix: str = "facegate:activity:"
    # Where each face id a vendor handed out came from: in-process, or in the same Redis.
    face_source_key_prefix: str = "facegate:face-sources:"
    # SigV4 signatures already accepted (gateway/auth/replay.py): in Redis when redis_url
    # is set, so a request replayed to another replica is refused too.
    replay_key_prefix: str = "facegate:replay:"
    # Off only for load benchmarks that resend one signed request (bench/); the gateway
    # warns at start when it is off.
    refuse_replayed_signatures: bool = True
    redis_timeout_seconds: float = 1.0

    # After SIGTERM the server stops accepting and lets in-flight requests finish (each with
    # its outcome record) for up to this long; more than upstream_timeout_seconds, so a
    # forward in progress ends on its own deadline, recorded, rather than cut off.
    shutdown_grace_seconds: int = 60

    # Which addresses the gateway trusts to set X-Forwarded-For.
    trusted_proxies: list[str] = Field(default_factory=list)
