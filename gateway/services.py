"""The long-lived objects one gateway process holds, built from Settings and closed on shutdown."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.checkpoint import SignedTreeState, Signer
from gateway.audit.log import AuditLog
from gateway.auth.authenticator import SigV4Authenticator
from gateway.auth.key_header import KeyHeaderAuthenticator
from gateway.auth.replay import (
    AcceptEveryReplay,
    MemoryReplayCache,
    RedisReplayCache,
    ReplayCache,
)
from gateway.auth.secrets import MasterKey
from gateway.config import Settings
from gateway.context.activity import ActivityStore, MemoryActivityStore, RedisActivityStore
from gateway.context.face_detection import face_counter
from gateway.context.face_sources import (
    FaceSourceStore,
    MemoryFaceSourceStore,
    RedisFaceSourceStore,
)
from gateway.context.inspection import ProbeInspector
from gateway.db import create_engine, request_reader, session_factory
from gateway.pipeline import Pipeline
from gateway.policy.engine import PolicyService
from gateway.policy.revisions import AuditedPolicyJournal
from gateway.vendors.azure import KEY_HEADER as AZURE_KEY_HEADER
from gateway.vendors.azure import AzureFaceAdapter
from gateway.vendors.base import VendorAdapter
from gateway.vendors.compreface import KEY_HEADER as COMPREFACE_KEY_HEADER
from gateway.vendors.compreface import CompreFaceAdapter
from gateway.vendors.inventory import Credentials, Protocol, VendorBackend, VendorInventory
from gateway.vendors.rekognition import RekognitionAdapter

log = logging.getLogger(__name__)


def load_inventory(settings: Settings) -> VendorInventory:
    """The vendors file, or without one the single Rekognition backend of the settings."""
    if settings.vendors_file is not None:
        return VendorInventory.load(settings.vendors_file)
    return VendorInventory(
        [
            VendorBackend(
                name="rekognition",
                protocol=Protocol.REKOGNITION,
                base_url=settings.rekognition_endpoint,
                region=settings.rekognition_region,
                credentials=Credentials(
                    access_key_id=settings.rekognition_access_key_id,
                    secret_env="FACEGATE_REKOGNITION_SECRET_ACCESS_KEY",  # noqa: S106 (a name)
                ),
                secret=SecretStr(settings.rekognition_secret_access_key.get_secret_value()),
            )
        ]
    )


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    master_key: MasterKey
    audit: AuditLog
    policy: PolicyService
    inventory: VendorInventory
    adapters: dict[Protocol, VendorAdapter]  # one per backend in the inventory
    pipeline: Pipeline
    activity: ActivityStore
    inspector: ProbeInspector | None
    face_sources: FaceSourceStore
    replays: ReplayCache

    @classmethod
    async def build(cls, settings: Settings) -> Services:
        inventory = load_inventory(settings)  # first: a bad vendors file stops startup
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        reads = request_reader(engine)
        master_key = MasterKey.load_or_create(settings.master_key_file)
        audit = AuditLog(
            sessions,
            signer=Signer.load_or_create(settings.log_key_file, settings.log_origin),
            signed_state=SignedTreeState.beside(settings.log_key_file),
        )
        # Each revision served is kept and its activation recorded (gateway/policy/revisions.py).
        policy = await PolicyService.open(
            settings, journal=AuditedPolicyJournal(sessions=sessions, audit=audit)
        )
        replays: ReplayCache = (
            RedisReplayCache(
                settings.redis_url,
                key_prefix=settings.replay_key_prefix,
                timeout_seconds=settings.redis_timeout_seconds,
            )
            if settings.redis_url
            else MemoryReplayCache()
        )
        if not settings.refuse_replayed_signatures:
            log.warning(
                "refuse_replayed_signatures is off: a captured signed request can be resent"
            )
            replays = AcceptEveryReplay()
        adapters: dict[Protocol, VendorAdapter] = {}
        for backend in inventory.backends:
            if backend.protocol is Protocol.REKOGNITION:
                adapters[backend.protocol] = RekognitionAdapter(
                    authenticator=SigV4Authenticator(
                        reads=reads,
                        master_key=master_key,
                        max_clock_skew=settings.max_clock_skew,
                        replays=replays,
                    ),
                    backend=backend,
                    max_image_bytes=settings.max_image_bytes,
                    timeout_seconds=settings.upstream_timeout_seconds,
                )
            elif backend.protocol is Protocol.AZURE:
                adapters[backend.protocol] = AzureFaceAdapter(
                    authenticator=KeyHeaderAuthenticator(
                        reads=reads, master_key=master_key, header=AZURE_KEY_HEADER
                    ),
                    backend=backend,
                    max_image_bytes=settings.max_image_bytes,
                    timeout_seconds=settings.upstream_timeout_seconds,
                )
            else:
                adapters[backend.protocol] = CompreFaceAdapter(
                    authenticator=KeyHeaderAuthenticator(
                        reads=reads, master_key=master_key, header=COMPREFACE_KEY_HEADER
                    ),
                    backend=backend,
                    max_image_bytes=settings.max_image_bytes,
                    timeout_seconds=settings.upstream_timeout_seconds,
                )
        activity: ActivityStore = (
            RedisActivityStore(
                settings.redis_url,
                key_prefix=settings.activity_key_prefix,
                timeout_seconds=settings.redis_timeout_seconds,
            )
            if settings.redis_url
            else MemoryActivityStore()
        )
        face_sources: FaceSourceStore = (
            RedisFaceSourceStore(
                settings.redis_url,
                key_prefix=settings.face_source_key_prefix,
                timeout_seconds=settings.redis_timeout_seconds,
            )
            if settings.redis_url
            else MemoryFaceSourceStore()
        )
        inspector = (
            ProbeInspector(
                max_pixels=settings.probe_max_pixels,
                workers=settings.probe_inspection_workers,
                counter=face_counter(settings.probe_detector, min_face=settings.probe_min_face),
            )
            if settings.probe_inspection
            else None
        )
        pipeline = Pipeline(
            audit=audit,
            policy=policy,
            reads=reads,
            inspector=inspector,
            activity=activity,
            face_sources=face_sources,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            master_key=master_key,
            audit=audit,
            policy=policy,
            inventory=inventory,
            adapters=adapters,
            pipeline=pipeline,
            activity=activity,
            inspector=inspector,
            face_sources=face_sources,
            replays=replays,
        )

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            await adapter.aclose()
        await self.activity.aclose()
        await self.face_sources.aclose()
        await self.replays.aclose()
        if self.inspector is not None:
            self.inspector.close()
        await self.policy.close()
        await self.audit.aclose()
        await self.engine.dispose()
