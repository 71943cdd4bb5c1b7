"""The long-lived objects one gateway process holds, built from Settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.audit.checkpoint import Signer
from gateway.audit.log import AuditLog
from gateway.auth.authenticator import SigV4Authenticator
from gateway.auth.secrets import MasterKey
from gateway.config import Settings
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

    @classmethod
    async def build(cls, settings: Settings) -> Services:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        master_key = MasterKey.load_or_create(settings.master_key_file)
        audit = AuditLog(
            sessions, signer=Signer.load_or_create(settings.log_key_file, settings.log_origin)
        )
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
        pipeline = Pipeline(audit=audit, policy=policy, sessions=sessions)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            master_key=master_key,
            audit=audit,
            policy=policy,
            rekognition=rekognition,
            pipeline=pipeline,
        )

    async def aclose(self) -> None:
        await self.rekognition.aclose()
        await self.policy.close()
        await self.audit.aclose()
        await self.engine.dispose()
