"""`facegate demo`: the gateway and the reference vendor on loopback, driven by boto3.

Everything runs on embedded defaults (SQLite, the in-process Rego engine, the reference
vendor). The database is left in the work directory for inspection with `facegate audit`.
It lives beside the reference vendor it drives rather than in the product package: the
gateway itself never imports it (`facegate demo` loads it on demand).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import SecretStr

from gateway.app import create_app
from gateway.config import Settings
from gateway.migrate import upgrade
from gateway.serving import BackgroundServer
from refvendor.boot import reference_backend

VENDOR_KEY, VENDOR_SECRET = "refvendor", "refvendor-secret"
CASE, OLD_CASE = "2026-HOM-0042", "2025-ROB-0007"


def run_demo(workdir: str) -> int:
    from refvendor import samples

    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    database = root / "facegate.db"
    for stale in root.glob("facegate.db*"):
        stale.unlink()  # each run tells the story from an empty log
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        master_key_file=root / "master.key",
        log_key_file=root / "log.key",
        policy_dir=Path(__file__).resolve().parent.parent / "policies",
        rekognition_access_key_id=VENDOR_KEY,
        rekognition_secret_access_key=SecretStr(VENDOR_SECRET),
    )
    upgrade(settings.database_url)

    print("starting the reference vendor (dlib face engine) ...")
    with reference_backend(
        root / "vendors", access_key_id=VENDOR_KEY, secret_access_key=VENDOR_SECRET
    ) as (vendor_url, inventory):
        settings = settings.model_copy(
            update={"rekognition_endpoint": vendor_url, "vendors_file": inventory}
        )
        with BackgroundServer(create_app(settings)) as gateway:
            print(f"gateway on {gateway.url}, vendor on {vendor_url}, audit log in {database}\n")
            _seed_vendor(vendor_url, samples)
            api = _Api(gateway.url, _bootstrap_admin(settings))
            return _scenario(api, gateway.url, samples, settings)


def _seed_vendor(vendor_url: str, samples: Any) -> None:
    """The agency's existing mugshot collection, set up directly at the vendor."""
    vendor = _rekognition(vendor_url, VENDOR_KEY, VENDOR_SECRET)
    vendor.create_collection(CollectionId="mugshots")
    vendor.index_faces(
        CollectionId="mugshots",
        Image={"Bytes": samples.astronaut_jpeg()},
        ExternalImageId="booking-1138",
    )
    for index in samples.detectable_lfw_indices()[:5]:
        vendor.index_faces(
            CollectionId="mugshots",
            Image={"Bytes": samples.lfw_face_jpeg(index)},
            ExternalImageId=f"booking-{2000 + index}",
        )


def _bootstrap_admin(settings: Settings) -> str:
    """The first admin is enrolled on the host, as `facegate principals add` does."""
    from gateway.auth.api_keys import issue_api_key
    from gateway.auth.principals import Role, create_principal
    from gateway.db import create_engine, session_factory

    async def _run() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as db, db.begin():
                now = datetime.now(UTC)
                await create_principal(
                    db,
                    principal_id="admin",
                    name="Demo Admin",
                    agency="Metro PD",
                    roles=[Role.ADMIN],
                    now=now,
                )
                return await issue_api_key(db, principal_id="admin", now=now)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


class _Api:
    """The management API, as an admin, officer or auditor calls it."""

    def __init__(self, url: str, admin_key: str) -> None:
        self.url = url
        self.admin_key = admin_key

    def call(self, method: str, path: str, key: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def enrol(self, principal_id: str, role: str) -> str:
        self.call(
            "POST",
            "/facegate/v1/principals",
            self.admin_key,
            json={"id": principal_id, "name": principal_id, "agency": "Metro PD", "roles": [role]},
        )
        key: str = self.call(
            "POST", f"/facegate/v1/principals/{principal_id}/keys", self.admin_key
        )["api_key"]
        return key


def _rekognition(url: str, key: str, secret: str) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _scenario(api: _Api, gateway_url: str, samples: Any, settings: Settings) -> int:
    officer_key = api.enrol("officer-7", "officer")
    auditor_key = api.enrol("auditor-1", "auditor")
    now = datetime.now(UTC)
    for warrant_id, case_number, valid_from, valid_until in (
        ("W-2026-118", CASE, now - timedelta(days=1), now + timedelta(days=30)),
        ("W-2025-044", OLD_CASE, now - timedelta(days=90), now - timedelta(days=60)),
    ):
        api.call(
            "POST",
            "/facegate/v1/warrants",
            api.admin_key,
            json={
                "id": warrant_id,
                "case_number": case_number,
                "kind": "warrant",
                "issuing_court": "Wayne County Circuit Court",
                "operations": ["identify"],
                "collections": ["mugshots"],
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
            },
        )

    def client_for(**context: Any) -> Any:
        issued = api.call("POST", "/facegate/v1/sessions", officer_key, json=context)
        return _rekognition(gateway_url, issued["access_key_id"], issued["secret_access_key"])

    serious = {"purpose": "criminal_investigation", "offense": "homicide"}
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "identification under an active warrant (threshold asked 80, raised to 99)",
            lambda: client_for(
                **serious, case_number=CASE, legal_basis="warrant", warrant_id="W-2026-118"
            ).search_faces_by_image(
                CollectionId="mugshots", Image=probe, FaceMatchThreshold=80, MaxFaces=50
            ),
        ),
        (
            "identification with no case stated",
            lambda: client_for(purpose="criminal_investigation").search_faces_by_image(
                CollectionId="mugshots", Image=probe
            ),
        ),
        (
            "identification under an expired warrant",
            lambda: client_for(
                **serious, case_number=OLD_CASE, legal_basis="warrant", warrant_id="W-2025-044"
            ).search_faces_by_image(CollectionId="mugshots", Image=probe),
        ),
        (
            "emotion detection (Attributes=ALL)",
            lambda: client_for(
                **serious, case_number=CASE, legal_basis="warrant", warrant_id="W-2026-118"
            ).detect_faces(Image={"Bytes": samples.astronaut_jpeg()}, Attributes=["ALL"]),
        ),
        (
            "a real-time stream processor on a street camera",
            lambda: client_for(
                **serious, case_number=CASE, legal_basis="warrant", warrant_id="W-2026-118"
            ).create_stream_processor(
                Input={
                    "KinesisVideoStream": {"Arn": "arn:aws:kinesisvideo:us-east-1:1:stream/cam"}
                },
                Output={"KinesisDataStream": {"Arn": "arn:aws:kinesis:us-east-1:1:stream/out"}},
                Name="main-street-cam",
                Settings={"FaceSearch": {"CollectionId": "mugshots", "FaceMatchThreshold": 99}},
                RoleArn="arn:aws:iam::1:role/rekognition",
            ),
        ),
        (
            "a crowd photo (16 faces) searched against the mugshots, under the warrant",
            lambda: client_for(
                **serious, case_number=CASE, legal_basis="warrant", warrant_id="W-2026-118"
            ).search_faces_by_image(
                CollectionId="mugshots", Image={"Bytes": samples.crowd_jpeg(16)}
            ),
        ),
    ]
    for number, (title, call) in enumerate(steps, start=1):
        print(f"{number}. {title}")
        try:
            response = call()
        except ClientError as exc:
            error = exc.response["Error"]
            print(f"   DENIED  {error['Code']}: {error['Message']}\n")
            continue
        matches = response.get("FaceMatches", [])
        found = ", ".join(
            f"{m['Face']['ExternalImageId']} ({m['Similarity']:.1f}%)" for m in matches
        )
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        print(f"   ALLOWED  {len(matches)} lead(s): {found or 'none'}")
        # The ids a reviewer verifies them by (`facegate leads review LEAD_ID ...`).
        print(f"   lead ids: {headers.get('x-facegate-leads') or 'none (a negative result)'}")
        print(f"   {headers.get('x-facegate-lead-notice', '')}\n")

    records = api.call(
        "GET",
        "/facegate/v1/audit/records",
        auditor_key,
        params={"case_number": CASE, "limit": 1000},
    )["entries"]
    print(f"auditor: {len(records)} audit records for case {CASE}:")
    for entry in records:
        reasons = ",".join(entry["reason_codes"]) or "-"
        print(
            f"   #{entry['seq']:<3} {entry['event_type']:<9} {entry['operation'] or '':<22} "
            f"{entry['decision'] or '':<6} {reasons}"
        )
    report = api.call("GET", "/facegate/v1/audit/verify", auditor_key)
    print(f"\nauditor: verify -> ok={report['ok']}, {report['entries_checked']} records checked")
    print(f"\nthe audit database is kept at {settings.database_url.split('///')[-1]}; try:")
    # The demo's own log key too: the CLI records the auditor's read, and a log refuses to
    # append under a key other than the one that signed its checkpoints.
    print(
        f"  FACEGATE_DATABASE_URL={settings.database_url}"
        f" FACEGATE_LOG_KEY_FILE={Path(settings.log_key_file).resolve()} facegate audit verify"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo(os.environ.get("FACEGATE_DEMO_DIR", "var/demo")))
