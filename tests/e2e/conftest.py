"""A real gateway in front of the real reference vendor, both on loopback sockets."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import httpx
import pytest
import yaml
from botocore.config import Config

from gateway.app import create_app
from gateway.auth.api_keys import issue_api_key
from gateway.auth.key_header import vendor_key
from gateway.auth.principals import Principal, Role, create_principal
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import IssuedCredentials, open_case_session
from gateway.case import CaseContext, LegalBasis
from gateway.config import Settings
from gateway.context.warrants import WarrantCreate, WarrantKind, create_warrant
from gateway.db import create_engine, session_factory
from gateway.operations import OperationKind
from gateway.serving import BackgroundServer
from refvendor import samples
from refvendor.app import create_app as create_refvendor
from refvendor.inventory import write_reference_inventory

REPO = Path(__file__).resolve().parents[2]
VENDOR_KEY, VENDOR_SECRET = "refvendor", "refvendor-secret"
AZURE_KEY, COMPREFACE_KEY = "refvendor-azure-test-key", "refvendor-compreface-test-key"
CASE = "2026-HOM-0042"


@pytest.fixture(scope="session")
def vendor() -> Iterator[BackgroundServer]:
    with BackgroundServer(
        create_refvendor(
            access_key_id=VENDOR_KEY,
            secret_access_key=VENDOR_SECRET,
            azure_key=AZURE_KEY,
            compreface_key=COMPREFACE_KEY,
        )
    ) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def mugshots(vendor: BackgroundServer) -> Iterator[None]:
    """The agency's existing mugshot collection at the vendor: the astronaut and LFW faces."""
    client = vendor_client(vendor)
    client.create_collection(CollectionId="mugshots")
    client.index_faces(
        CollectionId="mugshots",
        Image={"Bytes": samples.astronaut_jpeg()},
        ExternalImageId="astronaut",
    )
    for index in samples.detectable_lfw_indices()[:4]:
        client.index_faces(
            CollectionId="mugshots",
            Image={"Bytes": samples.lfw_face_jpeg(index)},
            ExternalImageId=f"lfw-{index}",
        )
    yield
    client.delete_collection(CollectionId="mugshots")


def vendor_calls(vendor: BackgroundServer) -> int:
    """How many requests have reached the vendor so far."""
    counts = httpx.get(f"{vendor.url}/__refvendor/calls").json()
    return sum(counts.values())


def vendor_client(vendor: BackgroundServer) -> Any:
    """A client talking to the vendor directly, as the agency's own set-up scripts would."""
    return boto3.client(
        "rekognition",
        endpoint_url=vendor.url,
        region_name="us-east-1",
        aws_access_key_id=VENDOR_KEY,
        aws_secret_access_key=VENDOR_SECRET,
    )


@dataclass
class Stack:
    """The gateway under test, and helpers to set up who may do what."""

    settings: Settings
    url: str
    vendor: BackgroundServer

    async def principal(self, principal_id: str, *roles: Role, agency: str = "Metro PD") -> str:
        """Enrol a principal; return an API key for the management API."""
        engine = create_engine(self.settings.database_url)
        try:
            async with session_factory(engine)() as db, db.begin():
                now = datetime.now(UTC)
                await create_principal(
                    db,
                    principal_id=principal_id,
                    name=principal_id.title(),
                    agency=agency,
                    roles=roles,
                    now=now,
                )
                return await issue_api_key(db, principal_id=principal_id, now=now)
        finally:
            await engine.dispose()

    async def session(
        self,
        officer: str = "officer-1",
        *,
        ttl: timedelta = timedelta(hours=1),
        purpose: str | None = "criminal_investigation",
        case_number: str | None = CASE,
        offense: str | None = "homicide",
        legal_basis: LegalBasis | None = LegalBasis.WARRANT,
        warrant_id: str | None = "W-1",
        agency: str = "Metro PD",
        roles: tuple[Role, ...] = (Role.OFFICER,),
    ) -> IssuedCredentials:
        """Open a case session for an officer (enrolled on first use, with `roles`)."""
        engine = create_engine(self.settings.database_url)
        try:
            async with session_factory(engine)() as db, db.begin():
                now = datetime.now(UTC)
                from gateway.auth.principals import get_principal

                principal: Principal | None = await get_principal(db, officer)
                if principal is None:
                    principal = await create_principal(
                        db,
                        principal_id=officer,
                        name=officer.title(),
                        agency=agency,
                        roles=roles,
                        now=now,
                    )
                return await open_case_session(
                    db,
                    master_key=MasterKey.load_or_create(self.settings.master_key_file),
                    principal=principal,
                    context=CaseContext(
                        purpose=purpose,
                        case_number=case_number,
                        offense=offense,
                        legal_basis=legal_basis,
                        warrant_id=warrant_id,
                    ),
                    ttl=ttl,
                    max_ttl=timedelta(days=1),
                    now=now,
                )
        finally:
            await engine.dispose()

    async def warrant(
        self,
        warrant_id: str = "W-1",
        *,
        kind: WarrantKind = WarrantKind.WARRANT,
        case_number: str = CASE,
        operations: tuple[OperationKind, ...] = (OperationKind.IDENTIFY,),
        collections: tuple[str, ...] = ("mugshots",),
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        realtime: bool = False,
        agency: str = "Metro PD",
        officers: tuple[str, ...] = (),
        created_by: str = "test-admin",
    ) -> None:
        engine = create_engine(self.settings.database_url)
        now = datetime.now(UTC)
        try:
            async with session_factory(engine)() as db, db.begin():
                await create_warrant(
                    db,
                    warrant=WarrantCreate(
                        id=warrant_id,
                        kind=kind,
                        issuing_court="Superior Court",
                        case_number=case_number,
                        operations=list(operations),
                        collections=list(collections),
                        realtime=realtime,
                        valid_from=valid_from or now - timedelta(days=1),
                        valid_until=valid_until or now + timedelta(days=30),
                        agency=agency,
                        officers=list(officers),
                    ),
                    created_by=created_by,
                    now=now,
                )
        finally:
            await engine.dispose()

    def compreface(self, credentials: IssuedCredentials) -> SimpleNamespace:
        """compreface-sdk, pointed at the gateway with the session's key-header credentials."""
        return compreface_sdk(
            self.url, vendor_key(credentials.access_key_id, credentials.secret_access_key)
        )

    def azure(self, credentials: IssuedCredentials) -> tuple[Any, Any]:
        """azure-ai-vision-face's (FaceClient, FaceAdministrationClient), pointed at the gateway."""
        return azure_sdk(
            self.url, vendor_key(credentials.access_key_id, credentials.secret_access_key)
        )

    def rekognition(self, credentials: IssuedCredentials, **config: Any) -> Any:
        """boto3's own Rekognition client, changed in nothing but endpoint and credentials."""
        return boto3.client(
            "rekognition",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, **config),
        )


def compreface_sdk(url: str, key: str) -> SimpleNamespace:
    """compreface-sdk's recognition, detection and verification services for one key."""
    from compreface import CompreFace

    domain, port = url.rsplit(":", 1)
    sdk = CompreFace(domain, port)
    return SimpleNamespace(
        recognition=sdk.init_face_recognition(key),
        detection=sdk.init_face_detection(key),
        verification=sdk.init_face_verification(key),
    )


def azure_sdk(url: str, key: str) -> tuple[Any, Any]:
    from azure.ai.vision.face import FaceAdministrationClient, FaceClient
    from azure.core.credentials import AzureKeyCredential

    credential = AzureKeyCredential(key)
    return (
        FaceClient(url, credential, retry_total=0),
        FaceAdministrationClient(url, credential, retry_total=0),
    )


@pytest.fixture(scope="session", autouse=True)
def compreface_mugshots(vendor: BackgroundServer) -> None:
    """The CompreFace service's collection, set up at the vendor: same faces as Rekognition's."""
    collection = compreface_sdk(vendor.url, COMPREFACE_KEY).recognition.get_face_collection()
    collection.add(samples.astronaut_jpeg(), "astronaut")
    for index in samples.detectable_lfw_indices()[:4]:
        collection.add(samples.lfw_face_jpeg(index), f"lfw-{index}")


@pytest.fixture(scope="session", autouse=True)
def azure_mugshots(vendor: BackgroundServer) -> dict[str, str]:
    """The Azure large person group, set up at the vendor; returns person ids by name."""
    from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel

    _, admin = azure_sdk(vendor.url, AZURE_KEY)
    admin.large_person_group.create(
        "mugshots", name="Mugshots", recognition_model=FaceRecognitionModel.RECOGNITION04
    )
    people = {"astronaut": samples.astronaut_jpeg()}
    people |= {f"lfw-{i}": samples.lfw_face_jpeg(i) for i in samples.detectable_lfw_indices()[:4]}
    ids = {}
    for name, image in people.items():
        person = admin.large_person_group.create_person("mugshots", name=name)
        admin.large_person_group.add_face(
            "mugshots", person.person_id, image, detection_model=FaceDetectionModel.DETECTION03
        )
        ids[name] = person.person_id
    admin.large_person_group.begin_train("mugshots", polling_interval=0.01).result()
    return ids


def gateway_settings(
    database_url: str,
    tmp_path: Path,
    vendor_url: str,
    *,
    attested_on: date | None = None,
    **overrides: Any,
) -> Settings:
    defaults: dict[str, Any] = {
        "database_url": database_url,
        "master_key_file": tmp_path / "master.key",
        "log_key_file": tmp_path / "log.key",
        "policy_dir": REPO / "policies",
        "vendors_file": write_reference_inventory(
            tmp_path / "vendors",
            vendor_url,
            rekognition=(VENDOR_KEY, VENDOR_SECRET),
            azure_key=AZURE_KEY,
            compreface_key=COMPREFACE_KEY,
            attested_on=attested_on or datetime.now(UTC).date(),
        ),
    }
    return Settings(**(defaults | overrides))


def policy_without_rate_limits(tmp_path: Path) -> Path:
    """The repository's policy with the burst and rate limits out of reach, for tests of a
    vendor protocol in which one officer makes many calls within seconds (the limits
    themselves are tested in test_patterns.py)."""
    copy = Path(shutil.copytree(REPO / "policies", tmp_path / "policies-unlimited"))
    path = copy / "data" / "patterns.yaml"
    data = yaml.safe_load(path.read_text())
    data["patterns"]["burst"]["window"] = "second"
    data["patterns"]["burst"]["max_probes"] = {"officer": 1000, "case": 1000}
    data["patterns"]["rate_limits"] = {"officer": {"second": 1000}}
    path.write_text(yaml.safe_dump(data))
    # The cases pinning those limits go with them: a gateway starts only on a revision whose
    # decision cases pass.
    (copy / "cases" / "patterns.yaml").unlink()
    return copy


@pytest.fixture
async def stack(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> AsyncIterator[Stack]:
    settings = gateway_settings(migrated_database_url, tmp_path, vendor.url)
    with BackgroundServer(create_app(settings)) as gateway:
        yield Stack(settings=settings, url=gateway.url, vendor=vendor)


@pytest.fixture
async def unlimited_stack(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> AsyncIterator[Stack]:
    """A gateway whose policy lifts the burst and rate limits (see policy_without_rate_limits)."""
    settings = gateway_settings(
        migrated_database_url, tmp_path, vendor.url, policy_dir=policy_without_rate_limits(tmp_path)
    )
    with BackgroundServer(create_app(settings)) as gateway:
        yield Stack(settings=settings, url=gateway.url, vendor=vendor)
