"""Added latency per vendor protocol: each SDK through the gateway vs. straight to the vendor.

    .venv/bin/python bench/vendor_latency.py [--rounds 60] [--check]

One run starts the reference vendor and a gateway (SQLite, embedded Rego, audit log on) on
loopback, then for each protocol times the same identification with the vendor's own SDK,
alternating direct and gateway calls so that machine noise falls on both alike:

    rekognition  boto3 search_faces_by_image (image in the request, dlib at the vendor)
    azure        azure-ai-vision-face identify_from_large_person_group (a faceId)
    compreface   compreface-sdk recognize (image in the request, dlib at the vendor)

Reported per protocol: median direct, median through the gateway, the added latency (the
difference of medians), and that added latency as a ratio of Rekognition's in the same
run. Absolute milliseconds depend on the machine; the ratio is the figure to compare.
--check exits 1 if any protocol adds more than 1.2x what Rekognition adds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from azure.ai.vision.face import FaceAdministrationClient, FaceClient
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.credentials import AzureKeyCredential
from bench_policy import lifted_policy
from botocore.config import Config
from compreface import CompreFace

from gateway.app import create_app
from gateway.auth.key_header import vendor_key
from gateway.auth.principals import Role, create_principal
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import IssuedCredentials, open_case_session
from gateway.case import CaseContext, LegalBasis
from gateway.config import Settings
from gateway.context.warrants import WarrantCreate, WarrantKind, create_warrant
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade
from gateway.operations import OperationKind
from gateway.serving import BackgroundServer
from refvendor import samples
from refvendor.app import create_app as create_refvendor
from refvendor.faces import FaceEngine
from refvendor.inventory import write_reference_inventory

REK = ("refvendor", "refvendor-secret")
AZURE_KEY, COMPREFACE_KEY = "bench-azure-key", "bench-compreface-key"
CASE = "2026-HOM-0042"
DETECT = {
    "detection_model": FaceDetectionModel.DETECTION03,
    "recognition_model": FaceRecognitionModel.RECOGNITION04,
    "return_face_id": True,
}


async def _open_session(settings: Settings) -> IssuedCredentials:
    engine = create_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        async with session_factory(engine)() as db, db.begin():
            await create_warrant(
                db,
                warrant=WarrantCreate(
                    id="W-1",
                    kind=WarrantKind.WARRANT,
                    issuing_court="Bench Court",
                    case_number=CASE,
                    operations=[OperationKind.IDENTIFY],
                    collections=["mugshots"],
                    realtime=False,
                    agency="A",
                    valid_from=now - timedelta(days=1),
                    valid_until=now + timedelta(days=1),
                ),
                created_by="bench",
                now=now,
            )
            officer = await create_principal(
                db, principal_id="officer", name="O", agency="A", roles=[Role.OFFICER], now=now
            )
            return await open_case_session(
                db,
                master_key=MasterKey.load_or_create(settings.master_key_file),
                principal=officer,
                context=CaseContext(
                    purpose="criminal_investigation",
                    case_number=CASE,
                    offense="homicide",
                    legal_basis=LegalBasis.WARRANT,
                    warrant_id="W-1",
                ),
                ttl=timedelta(hours=2),
                max_ttl=timedelta(hours=2),
                now=now,
            )
    finally:
        await engine.dispose()


def _rekognition(url: str, key: str, secret: str) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def _seed(vendor_url: str) -> None:
    """The same mugshots at the vendor under each protocol."""
    people = {"astronaut": samples.astronaut_jpeg()}
    people |= {f"lfw-{i}": samples.lfw_face_jpeg(i) for i in samples.detectable_lfw_indices()[:8]}
    rekognition = _rekognition(vendor_url, *REK)
    rekognition.create_collection(CollectionId="mugshots")
    domain, port = vendor_url.rsplit(":", 1)
    compreface = CompreFace(domain, port).init_face_recognition(COMPREFACE_KEY)
    admin = FaceAdministrationClient(vendor_url, AzureKeyCredential(AZURE_KEY))
    admin.large_person_group.create(
        "mugshots", name="m", recognition_model=FaceRecognitionModel.RECOGNITION04
    )
    for name, image in people.items():
        rekognition.index_faces(
            CollectionId="mugshots", Image={"Bytes": image}, ExternalImageId=name
        )
        compreface.get_face_collection().add(image, name)
        person = admin.large_person_group.create_person("mugshots", name=name)
        admin.large_person_group.add_face(
            "mugshots", person.person_id, image, detection_model=FaceDetectionModel.DETECTION03
        )


def _calls(
    url: str, *, rekognition: tuple[str, str], key_for: Callable[[str], str]
) -> dict[str, Callable[[], object]]:
    probe = samples.astronaut_variant_jpeg()
    client = _rekognition(url, *rekognition)
    domain, port = url.rsplit(":", 1)
    recognition = CompreFace(domain, port).init_face_recognition(key_for("compreface"))
    face = FaceClient(url, AzureKeyCredential(key_for("azure")))
    [detected] = face.detect(probe, **DETECT)
    return {
        "rekognition": lambda: client.search_faces_by_image(
            CollectionId="mugshots", Image={"Bytes": probe}, FaceMatchThreshold=80, MaxFaces=5
        ),
        "azure": lambda: face.identify_from_large_person_group(
            face_ids=[detected.face_id],
            large_person_group_id="mugshots",
            max_num_of_candidates_returned=5,
            confidence_threshold=0.8,
        ),
        "compreface": lambda: recognition.recognize(probe, {"prediction_count": 5}),
    }


def _time(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facegate-bench-"))
    engine = FaceEngine()
    vendor_app = create_refvendor(
        access_key_id=REK[0],
        secret_access_key=REK[1],
        engine=engine,
        azure_key=AZURE_KEY,
        compreface_key=COMPREFACE_KEY,
    )
    with BackgroundServer(vendor_app) as vendor:
        _seed(vendor.url)
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{work / 'facegate.db'}",
            master_key_file=work / "master.key",
            # The same officer calls many times a second: the rate and burst limits lifted.
            policy_dir=lifted_policy(work),
            vendors_file=write_reference_inventory(
                work / "vendors",
                vendor.url,
                rekognition=REK,
                azure_key=AZURE_KEY,
                compreface_key=COMPREFACE_KEY,
                attested_on=datetime.now(UTC).date(),
            ),
        )
        upgrade(settings.database_url)
        credentials = asyncio.run(_open_session(settings))
        case_key = vendor_key(credentials.access_key_id, credentials.secret_access_key)
        with BackgroundServer(create_app(settings)) as gateway:
            direct = _calls(
                vendor.url,
                rekognition=REK,
                key_for=lambda p: AZURE_KEY if p == "azure" else COMPREFACE_KEY,
            )
            through = _calls(
                gateway.url,
                rekognition=(credentials.access_key_id, credentials.secret_access_key),
                key_for=lambda _: case_key,
            )
            samples_ms: dict[str, dict[str, list[float]]] = {
                p: {"direct": [], "gateway": []} for p in direct
            }
            for protocol in direct:  # warm up both paths
                for _ in range(3):
                    direct[protocol]()
                    through[protocol]()
            for _ in range(args.rounds):
                for protocol in direct:
                    samples_ms[protocol]["direct"].append(_time(direct[protocol]))
                    samples_ms[protocol]["gateway"].append(_time(through[protocol]))

    added: dict[str, float] = {}
    print(f"{args.rounds} rounds, medians in ms (direct and gateway calls alternate)\n")
    print(f"{'protocol':<12} {'direct':>8} {'gateway':>8} {'added':>8} {'added / rekognition':>20}")
    for protocol, timings in samples_ms.items():
        d = statistics.median(timings["direct"])
        g = statistics.median(timings["gateway"])
        added[protocol] = g - d
    failed = False
    for protocol, timings in samples_ms.items():
        d = statistics.median(timings["direct"])
        g = statistics.median(timings["gateway"])
        ratio = added[protocol] / added["rekognition"]
        failed |= ratio > 1.2
        print(f"{protocol:<12} {d:>8.2f} {g:>8.2f} {added[protocol]:>8.2f} {ratio:>20.2f}")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
