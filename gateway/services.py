"""The long-lived objects one gateway process holds, built from Settings and closed on shutdown."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.checkpoint import SignedTreeState, Signer
from gateway.audit.fsck import LogChecker
from gateway.audit.log import AuditLog
from gateway.audit.query import RecordQuery
from gateway.audit.reads import LogReader
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
from gateway.db import RequestReader, create_engine, session_factory
from gateway.leads.book import LeadBook
from gateway.pipeline import Pipeline
from gateway.policy.engine import PolicyService
from gateway.policy.revisions import AuditedPolicyJournal
from gateway.vendors import REGISTRY
from gateway.vendors.base import AuthDeps, Authenticator, Vendor, VendorAdapter
from gateway.vendors.inventory import VendorInventory

log = logging.getLogger(__name__)


def load_inventory(settings: Settings) -> VendorInventory:
    """The vendors file, or without one the backends the settings describe (each registered
    vendor reads its own settings: `VendorDescriptor.settings_backend`)."""
    if settings.vendors_file is not None:
        return VendorInventory.load(settings.vendors_file)
    backends = [entry.settings_backend(settings) for entry in REGISTRY.values()]
    inventory = VendorInventory([backend for backend in backends if backend is not None])
    if not inventory.backends:
        log.warning(
            "no vendor backend is configured (no vendors_file, no rekognition_secret_access_key):"
            " every vendor request will be refused, on record"
        )
    return inventory


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    reads: RequestReader  # the request path's reads (sessions, warrants), own connections
    sessions: async_sessionmaker[AsyncSession]
    master_key: MasterKey
    audit: AuditLog  # the writer; reads, queries and checks below, over the same database
    audit_reader: LogReader
    audit_records: RecordQuery
    audit_checker: LogChecker
    policy: PolicyService
    inventory: VendorInventory
    # Every registered vendor: its authenticator, and its adapter when the inventory has
    # a backend for it.
    vendors: dict[str, Vendor]
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
        master_key = MasterKey.load_or_create(settings.master_key_file)
        reads = await RequestReader.open(engine)
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
        deps = AuthDeps(reads=reads, master_key=master_key, settings=settings, replays=replays)
        vendors = {
            protocol: Vendor(
                descriptor=entry,
                authenticator=entry.authenticator(deps),
                adapter=(
                    entry.adapter(backend, settings)
                    if (backend := inventory.get(protocol)) is not None
                    else None
                ),
            )
            for protocol, entry in REGISTRY.items()
        }
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
            leads=LeadBook(sessions=sessions, audit=audit),
        )
        return cls(
            settings=settings,
            engine=engine,
            reads=reads,
            sessions=sessions,
            master_key=master_key,
            audit=audit,
            audit_reader=LogReader(sessions),
            audit_records=RecordQuery(sessions),
            audit_checker=LogChecker(sessions),
            policy=policy,
            inventory=inventory,
            vendors=vendors,
            pipeline=pipeline,
            activity=activity,
            inspector=inspector,
            face_sources=face_sources,
            replays=replays,
        )

    @property
    def adapters(self) -> dict[str, VendorAdapter]:
        """The adapter of each vendor the inventory has a backend for."""
        return {p: v.adapter for p, v in self.vendors.items() if v.adapter is not None}

    @property
    def authenticators(self) -> dict[str, Authenticator]:
        return {p: v.authenticator for p, v in self.vendors.items()}

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
        await self.reads.aclose()
        await self.engine.dispose()
