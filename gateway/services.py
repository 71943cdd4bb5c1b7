"""The long-lived objects one gateway process holds, built from Settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.log import AuditLog
from gateway.auth.authenticator import SigV4Authenticator
from gateway.auth.secrets import MasterKey
from gateway.config import Settings
from gateway.context.activity import ActivityStore, MemoryActivityStore, RedisActivityStore
from gateway.context.inspection import ProbeInspector
from gateway.db import create_engine, session_factory
from gateway.pipeline import Pipeline
from gateway.policy.engine import PolicyService
from gateway.vendors.rekognition import RekognitionAdapter


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    master_key: MasterKey
    audit: AuditLog
    policy: PolicyService
    rekognition: RekognitionAdapter
    pipeline: Pipeline
    activity: ActivityStore
    inspector: ProbeInspector | None

    @classmethod
    async def build(cls, settings: Settings) -> Services:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        master_key = MasterKey.load_or_create(settings.master_key_file)
        audit = AuditLog(sessions)
        policy = await PolicyService.open(settings)
        rekognition = RekognitionAdapter(
            authenticator=SigV4Authenticator(
                sessions=sessions, master_key=master_key, max_clock_skew=settings.max_clock_skew
            ),
            endpoint=settings.rekognition_endpoint,
            region=settings.rekognition_region,
            access_key_id=settings.rekognition_access_key_id,
            secret_access_key=settings.rekognition_secret_access_key.get_secret_value(),
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
        inspector = (
            ProbeInspector(
                max_pixels=settings.probe_max_pixels, workers=settings.probe_inspection_workers
            )
            if settings.probe_inspection
            else None
        )
        pipeline = Pipeline(
            audit=audit, policy=policy, sessions=sessions, inspector=inspector, activity=activity
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            master_key=master_key,
            audit=audit,
            policy=policy,
            rekognition=rekognition,
            pipeline=pipeline,
            activity=activity,
            inspector=inspector,
        )

    async def aclose(self) -> None:
        await self.rekognition.aclose()
        await self.activity.aclose()
        if self.inspector is not None:
            self.inspector.close()
        await self.policy.close()
        await self.engine.dispose()
