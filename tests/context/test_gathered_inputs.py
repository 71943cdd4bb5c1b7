"""Step 3's whole output pinned: the policy inputs a fixed run of requests is judged on.

Gather is on every request's path and is made cheaper from time to time (the activity
windows' plan, the warrant read, the vendor's facts); none of that may change a byte of
what the engines evaluate and the decision record keeps. The run covers each warrant status,
requests with and without a case, headers completing the context, inspected probes known by
their identity, compared identities, faces named by id, enrolments, windows sliding, and
reservations taken back; its inputs are compared, as JSON, with those recorded in
`gathered_inputs.json`. After a change that is meant to alter them, write the file anew with
FACEGATE_WRITE_GATHERED_INPUTS=1 and review its diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.principals import Principal, Role
from gateway.auth.sessions import BoundSession
from gateway.case import CaseContext, LegalBasis
from gateway.context.activity import ActivityStore, MemoryActivityStore, RedisActivityStore
from gateway.context.face_sources import MemoryFaceSourceStore, SourceRecord
from gateway.context.gather import gather, vendor_facts
from gateway.context.inspection import ImageFindings, ProbeInspection
from gateway.context.warrants import WarrantCreate, WarrantKind, create_warrant, revoke_warrant
from gateway.db import RequestReader, create_engine, session_factory
from gateway.operations import FaceOperation, OperationKind
from gateway.vendors.inventory import Attestation, Credentials, VendorBackend

REDIS_URL = "redis://127.0.0.1:6379/0"
GOLDEN = Path(__file__).with_name("gathered_inputs.json")
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
OFFICER = Principal(id="officer-1", name="Officer", agency="Metro PD", roles=(Role.OFFICER,))
OTHER = Principal(id="officer-2", name="Other", agency="Metro PD", roles=(Role.OFFICER,))
BACKEND = VendorBackend(
    name="rekognition-east",
    protocol="rekognition",
    base_url="https://rekognition.us-east-1.amazonaws.com",
    credentials=Credentials(access_key_id="AKIDEXAMPLE", secret_env="FACEGATE_TEST_SECRET"),
    attestations={
        "demographic_accuracy_test": Attestation(
            date=date(2025, 6, 30), source="NIST FRTE", url="https://pages.nist.gov/frvt/"
        )
    },
)


class FixedInspector:
    """Finds what it is told, for the probe identities the activity windows key on."""

    def __init__(self, inspection: ProbeInspection) -> None:
        self.inspection = inspection

    async def inspect(self, images: tuple[bytes, ...], headers: Mapping[str, str]) -> Any:
        return self.inspection


@pytest.fixture
async def reads(migrated_database_url: str) -> AsyncIterator[RequestReader]:
    engine = create_engine(migrated_database_url)
    async with session_factory(engine)() as db, db.begin():
        for warrant_id, case, valid_until in (
            ("W-1", "2026-1", NOW + timedelta(days=1)),
            ("W-REVOKED", "2026-1", NOW + timedelta(days=1)),
            ("W-EXPIRED", "2026-1", NOW - timedelta(hours=1)),
            ("W-2", "2026-2", NOW + timedelta(days=1)),
        ):
            await create_warrant(
                db,
                warrant=WarrantCreate(
                    id=warrant_id,
                    kind=WarrantKind.WARRANT,
                    issuing_court="Superior Court",
                    case_number=case,
                    operations=[OperationKind.IDENTIFY, OperationKind.VERIFY],
                    collections=["mugshots"],
                    valid_from=NOW - timedelta(days=2),
                    valid_until=valid_until,
                    agency="Metro PD",
                ),
                created_by="admin",
                now=NOW - timedelta(days=2),
            )
        await revoke_warrant(db, warrant_id="W-REVOKED", reason="quashed", now=NOW)
    reads = await RequestReader.open(engine)
    yield reads
    await reads.aclose()
    await engine.dispose()


@pytest.fixture(params=["memory", "redis"])
async def activity(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[ActivityStore]:
    store: ActivityStore = (
        MemoryActivityStore()
        if request.param == "memory"
        else RedisActivityStore(REDIS_URL, key_prefix=redis_prefix, timeout_seconds=10.0)
    )
    yield store
    await store.aclose()


def session(principal: Principal, **context: Any) -> BoundSession:
    return BoundSession(
        access_key_id=f"key-{principal.id}",
        principal=principal,
        context=CaseContext(purpose="criminal_investigation", **context),
        expires_at=NOW + timedelta(days=3),
        revoked=False,
    )


def operation(kind: OperationKind, name: str, **fields: Any) -> FaceOperation:
    return FaceOperation(vendor="rekognition", name=name, kind=kind, **fields)


def findings(*identities: str, faces: int = 1) -> ProbeInspection:
    return ProbeInspection(
        faces_in_probe=faces,
        images=tuple(
            ImageFindings(faces=faces, width=640, height=480, digest=f"sha256:{i}", identity=i)
            for i in identities
        ),
    )


SEARCH = operation(
    OperationKind.IDENTIFY, "SearchFacesByImage", collection="mugshots", threshold=80.0
)


def requests() -> list[dict[str, Any]]:
    """The run: each request's gather arguments, and whether its reservation is taken back."""
    warranted = session(
        OFFICER, case_number="2026-1", legal_basis=LegalBasis.WARRANT, warrant_id="W-1"
    )
    run: list[dict[str, Any]] = []
    for n in range(6):  # a burst, then slower: the second and ten-second windows slide
        run.append(
            {
                "session": warranted,
                "operation": SEARCH.model_copy(update={"probe_digests": [f"sha256:{n % 3}"]}),
                "at": timedelta(milliseconds=300 * n if n < 4 else 20_000 * n),
            }
        )
    run += [
        {  # refused later: its reservation is taken back
            "session": warranted,
            "operation": SEARCH.model_copy(update={"probe_digests": ["sha256:x"]}),
            "at": timedelta(minutes=3),
            "release": True,
        },
        {  # the same picture re-encoded, inspected: known by its identity
            "session": warranted,
            "operation": SEARCH.model_copy(update={"probe_digests": ["sha256:y"]}),
            "inspection": findings("phash:0123456789abcdef"),
            "at": timedelta(minutes=4),
        },
        {
            "session": session(OTHER, case_number="2026-2", warrant_id="W-2"),
            "operation": SEARCH.model_copy(update={"probe_digests": ["sha256:z"]}),
            "inspection": findings("phash:0123456789abcdee"),
            "headers": {"x-facegate-legal-basis": "warrant", "x-facegate-offense": "Robbery"},
            "at": timedelta(minutes=5),
        },
        {
            "session": session(OFFICER, case_number="2026-1", warrant_id="W-REVOKED"),
            "operation": SEARCH,
            "at": timedelta(minutes=6),
        },
        {
            "session": session(OFFICER, case_number="2026-1", warrant_id="W-EXPIRED"),
            "operation": SEARCH,
            "at": timedelta(minutes=7),
        },
        {
            "session": session(OFFICER, case_number="2026-1", warrant_id="W-UNKNOWN"),
            "operation": SEARCH,
            "headers": {"x-facegate-case": "2026-9"},
            "at": timedelta(minutes=8),
        },
        {  # no case: no case scope
            "session": session(OFFICER),
            "operation": operation(OperationKind.DETECT, "DetectFaces", probe_digests=["sha256:d"]),
            "inspection": findings("phash:fedcba9876543210", faces=3),
            "at": timedelta(minutes=9),
        },
        {  # an enrolment of a crowd photo
            "session": warranted,
            "operation": operation(
                OperationKind.ENROLL, "IndexFaces", collection="mugshots", probe_digests=["e"]
            ),
            "inspection": findings("phash:1111111111111111", faces=4),
            "at": timedelta(minutes=10),
        },
        {  # stored identities compared one by one, faces named by id
            "session": warranted,
            "operation": operation(
                OperationKind.VERIFY,
                "CompareFaces",
                collection="mugshots",
                compared_identities=["person:a", "person:b"],
            ),
            "probe_faces": ("face-1",),
            "target_faces": ("face-2",),
            "at": timedelta(hours=2),
        },
        {  # a day later: only the day window remembers the start
            "session": warranted,
            "operation": SEARCH.model_copy(update={"probe_digests": ["sha256:0"]}),
            "at": timedelta(hours=23, minutes=59, seconds=59),
        },
    ]
    return run


async def gathered_inputs(reads: RequestReader, activity: ActivityStore) -> list[Any]:
    face_sources = MemoryFaceSourceStore()
    await face_sources.remember(
        {
            "face-1": SourceRecord(source="phash:2222222222222222", faces_in_source=2),
            "face-2": SourceRecord(source="phash:2222222222222222", faces_in_source=2, index=1),
        }
    )
    inputs = []
    for n, request in enumerate(requests()):
        inspection = request.get("inspection")
        gathered = await gather(
            reads=reads,
            session=request["session"],
            operation=request["operation"],
            images=(b"",) * len(inspection.images) if inspection else (),
            probe_faces=request.get("probe_faces", ()),
            target_faces=request.get("target_faces", ()),
            headers=request.get("headers", {}),
            request_id=f"request-{n}",
            now=NOW + request["at"],
            vendor=vendor_facts(BACKEND),
            face_sources=face_sources,
            activity=activity,
            inspector=FixedInspector(inspection) if inspection else None,  # type: ignore[arg-type]
        )
        if request.get("release"):
            await activity.release(gathered.reservation)
        inputs.append(json.loads(gathered.policy_input.model_dump_json()))
    return inputs


async def test_a_fixed_run_of_requests_is_judged_on_the_inputs_recorded(
    reads: RequestReader, activity: ActivityStore
) -> None:
    inputs = await gathered_inputs(reads, activity)
    if os.environ.get("FACEGATE_WRITE_GATHERED_INPUTS"):
        GOLDEN.write_text(json.dumps(inputs, indent=1) + "\n")
    recorded = json.loads(GOLDEN.read_text())
    for n, (found, expected) in enumerate(zip(inputs, recorded, strict=True)):
        # As text, so that key order (which the engines and the audit record see) counts.
        assert json.dumps(found) == json.dumps(expected), f"request {n}"
