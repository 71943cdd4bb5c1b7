"""The warrant registry, and the status the policy sees for each request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.auth.models import PrincipalRow
from gateway.auth.principals import Principal, Role, create_principal, principal_from_row
from gateway.auth.secrets import MasterKey
from gateway.auth.sessions import (
    BoundSession,
    load_case_session,
    open_case_session,
    read_case_session,
)
from gateway.case import CaseContext
from gateway.context.activity import ActivityEvent, MemoryActivityStore
from gateway.context.face_sources import MemoryFaceSourceStore
from gateway.context.gather import gather
from gateway.context.warrants import (
    PrefetchedWarrant,
    WarrantCreate,
    WarrantKind,
    create_warrant,
    find_warrant,
    revoke_warrant,
)
from gateway.db import RequestReader, create_engine, session_factory
from gateway.errors import ServiceUnavailable, StorageUnavailable
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import PolicyContext, WarrantFinding, WarrantStatus

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
MASTER = MasterKey(b"k" * 32)
SEARCH = FaceOperation(
    vendor="rekognition",
    name="SearchFacesByImage",
    kind=OperationKind.IDENTIFY,
    collection="mugshots",
)


async def register_warrant(
    db: AsyncSession,
    warrant_id: str = "W-1",
    *,
    now: datetime = NOW,
    registered_at: datetime | None = None,
) -> None:
    """A warrant to identify in case 2026-1 of Metro PD, in mugshots, valid from a day
    before ``now`` to a day after, registered at ``registered_at`` (default ``now``)."""
    await create_warrant(
        db,
        warrant=WarrantCreate(
            id=warrant_id,
            kind=WarrantKind.WARRANT,
            issuing_court="Superior Court",
            case_number="2026-1",
            operations=[OperationKind.IDENTIFY],
            collections=["mugshots"],
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=1),
            agency="Metro PD",
        ),
        created_by="admin",
        now=now if registered_at is None else registered_at,
    )


@pytest.fixture
async def db(migrated_database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(migrated_database_url)
    async with session_factory(engine)() as session, session.begin():
        await register_warrant(session)
        yield session
    await engine.dispose()


async def status(
    db: AsyncSession,
    *,
    warrant_id: str | None = "W-1",
    operation: FaceOperation = SEARCH,
    case_number: str = "2026-1",
    now: datetime = NOW,
) -> WarrantStatus:
    finding = await find_warrant(
        db, warrant_id=warrant_id, operation=operation, case_number=case_number, now=now
    )
    return finding.status


async def test_statuses(db: AsyncSession) -> None:
    assert await status(db) is WarrantStatus.ACTIVE
    assert await status(db, warrant_id=None) is WarrantStatus.NONE
    assert await status(db, warrant_id="W-404") is WarrantStatus.UNKNOWN
    assert await status(db, now=NOW + timedelta(days=2)) is WarrantStatus.EXPIRED
    assert await status(db, now=NOW - timedelta(days=2)) is WarrantStatus.EXPIRED
    assert await status(db, case_number="2026-2") is WarrantStatus.OUT_OF_SCOPE
    other_collection = SEARCH.model_copy(update={"collection": "dmv"})
    assert await status(db, operation=other_collection) is WarrantStatus.OUT_OF_SCOPE
    enrolment = SEARCH.model_copy(update={"kind": OperationKind.ENROLL})
    assert await status(db, operation=enrolment) is WarrantStatus.OUT_OF_SCOPE

    await revoke_warrant(db, warrant_id="W-1", reason="quashed", now=NOW)
    assert await status(db) is WarrantStatus.REVOKED


async def test_the_finding_carries_the_warrant_for_the_policy(db: AsyncSession) -> None:
    finding = await find_warrant(
        db, warrant_id="W-1", operation=SEARCH, case_number="2026-1", now=NOW
    )
    assert finding.kind == "warrant"
    assert finding.operations == ["identify"]
    assert finding.valid_until == (NOW + timedelta(days=1)).isoformat()
    assert finding.agency == "Metro PD"
    assert finding.officers == []
    assert finding.created_by == "admin"


async def test_an_identification_naming_no_collection_is_out_of_scope(db: AsyncSession) -> None:
    """Detour 6: FindSimilar over ad-hoc faceIds names no collection, and no warrant covers
    that, not even one for any collection."""
    find_similar = FaceOperation(vendor="azure", name="FindSimilar", kind=OperationKind.IDENTIFY)
    assert await status(db, operation=find_similar) is WarrantStatus.OUT_OF_SCOPE
    await create_warrant(
        db,
        warrant=WarrantCreate(
            id="W-ANY",
            kind=WarrantKind.WARRANT,
            issuing_court="Superior Court",
            case_number="2026-1",
            operations=[OperationKind.IDENTIFY, OperationKind.STREAM],
            valid_from=NOW - timedelta(days=1),
            valid_until=NOW + timedelta(days=1),
            agency="Metro PD",
        ),
        created_by="admin",
        now=NOW,
    )
    assert (
        await status(db, warrant_id="W-ANY", operation=find_similar) is WarrantStatus.OUT_OF_SCOPE
    )
    assert await status(db, warrant_id="W-ANY") is WarrantStatus.ACTIVE
    # Other kinds naming none (a stream processor set up earlier) are not held to it.
    start = FaceOperation(
        vendor="rekognition", name="StartStreamProcessor", kind=OperationKind.STREAM
    )
    assert await status(db, warrant_id="W-ANY", operation=start) is WarrantStatus.ACTIVE


async def test_a_warrant_needs_its_agency_and_names_only_officers_of_it(db: AsyncSession) -> None:
    from gateway.auth.principals import Role, create_principal
    from gateway.errors import MalformedRequest

    for principal_id, agency, roles in (
        ("officer-1", "Metro PD", [Role.OFFICER]),
        ("deputy-1", "County Sheriff", [Role.OFFICER]),
        ("auditor-1", "Metro PD", [Role.AUDITOR]),
    ):
        await create_principal(
            db, principal_id=principal_id, name=principal_id, agency=agency, roles=roles, now=NOW
        )

    def warrant(warrant_id: str, **fields: object) -> WarrantCreate:
        return WarrantCreate.model_validate(
            {
                "id": warrant_id,
                "kind": "warrant",
                "issuing_court": "Superior Court",
                "case_number": "2026-1",
                "operations": ["identify"],
                "valid_from": NOW - timedelta(days=1),
                "valid_until": NOW + timedelta(days=1),
            }
            | fields
        )

    with pytest.raises(MalformedRequest, match="needs the agency"):
        await create_warrant(db, warrant=warrant("W-A"), created_by="admin", now=NOW)
    for named, problem in (
        ("deputy-1", "an officer of County Sheriff"),
        ("auditor-1", "not an officer"),
        ("nobody", "not an officer"),
    ):
        with pytest.raises(MalformedRequest, match=problem):
            await create_warrant(
                db,
                warrant=warrant("W-B", agency="Metro PD", officers=[named]),
                created_by="admin",
                now=NOW,
            )
    created = await create_warrant(
        db,
        warrant=warrant("W-C", agency="Metro PD", officers=["officer-1"]),
        created_by="admin",
        now=NOW,
    )
    assert (created.agency, created.officers) == ("Metro PD", ["officer-1"])
    finding = await find_warrant(
        db, warrant_id="W-C", operation=SEARCH, case_number="2026-1", now=NOW
    )
    assert (finding.agency, finding.officers) == ("Metro PD", ["officer-1"])


def test_only_court_orders_authorise_realtime_use() -> None:
    with pytest.raises(ValidationError, match="only a court order"):
        WarrantCreate(
            id="W-2",
            kind=WarrantKind.WARRANT,
            issuing_court="c",
            case_number="1",
            operations=[OperationKind.STREAM],
            realtime=True,
            valid_from=NOW,
            valid_until=NOW + timedelta(days=1),
        )


def test_validity_window_must_be_ordered_and_zoned() -> None:
    with pytest.raises(ValidationError):
        WarrantCreate(
            id="W-3",
            kind=WarrantKind.WARRANT,
            issuing_court="c",
            case_number="1",
            operations=[OperationKind.IDENTIFY],
            valid_from=NOW,
            valid_until=NOW,
        )
    with pytest.raises(ValidationError):
        WarrantCreate(
            id="W-4",
            kind=WarrantKind.WARRANT,
            issuing_court="c",
            case_number="1",
            operations=[OperationKind.IDENTIFY],
            valid_from=datetime(2026, 1, 1),
            valid_until=datetime(2027, 1, 1),
        )


@pytest.fixture
async def registry(migrated_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a registry holding W-1, committed."""
    engine = create_engine(migrated_database_url)
    async with session_factory(engine)() as session, session.begin():
        await register_warrant(session)
    yield engine
    await engine.dispose()


async def gathered_context(
    reads: RequestReader,
    session: BoundSession,
    headers: dict[str, str] | None = None,
    activity: MemoryActivityStore | None = None,
) -> PolicyContext:
    gathered = await gather(
        reads=reads,
        session=session,
        operation=SEARCH,
        images=(),
        probe_faces=(),
        target_faces=(),
        headers=headers or {},
        request_id=f"request-{uuid.uuid4().hex}",
        now=NOW,
        vendor=None,
        face_sources=MemoryFaceSourceStore(),
        activity=MemoryActivityStore() if activity is None else activity,
    )
    return gathered.policy_input.context


async def gathered_warrant(reads: RequestReader, activity: MemoryActivityStore) -> WarrantFinding:
    principal = Principal(id="officer-1", name="Officer", agency="Metro PD", roles=(Role.OFFICER,))
    session = BoundSession(
        access_key_id="key-1",
        principal=principal,
        context=CaseContext(
            purpose="criminal_investigation", case_number="2026-1", warrant_id="W-1"
        ),
        expires_at=NOW + timedelta(days=1),
        revoked=False,
    )
    context = await gathered_context(reads, session, activity=activity)
    assert context.warrant is not None
    return context.warrant


@pytest.fixture
async def reads(registry: AsyncEngine) -> AsyncIterator[RequestReader]:
    reads = await RequestReader.open(registry)
    yield reads
    await reads.aclose()


async def test_a_registry_that_cannot_be_read_refuses_and_holds_no_reservation(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    activity = MemoryActivityStore()
    async with registry.begin() as connection:
        await connection.execute(sa.text("ALTER TABLE warrants RENAME TO warrants_away"))
    try:
        with pytest.raises(ServiceUnavailable, match="warrant registry could not be read"):
            await gathered_warrant(reads, activity)
    finally:
        async with registry.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE warrants_away RENAME TO warrants"))
    assert (await gathered_warrant(reads, activity)).status is WarrantStatus.ACTIVE
    # The failed request was never counted: the one that read the registry is the only one.
    reservation = await activity.reserve(
        ActivityEvent(
            request_id="probe",
            at=NOW,
            officer="officer-1",
            agency="Metro PD",
            case_number=None,
            kind=OperationKind.DETECT,
        )
    )
    assert reservation.counts["officer"]["requests"]["day"] == 2


# PostgreSQL only: SQLite has no server to drop a connection.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_connection_the_database_dropped_fails_at_most_one_request_and_is_replaced(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    activity = MemoryActivityStore()
    assert (await gathered_warrant(reads, activity)).status is WarrantStatus.ACTIVE
    killer = create_engine(registry.url.render_as_string(hide_password=False))
    try:
        async with killer.connect() as connection:  # every other one, the reader's included
            await connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await killer.dispose()
    # The reader's pool replaces a connection it sees closed before handing it out; one
    # whose end it has not yet read fails its request, closed, and is thrown away.
    try:
        assert (await gathered_warrant(reads, activity)).status is WarrantStatus.ACTIVE
    except ServiceUnavailable as exc:
        assert "warrant registry could not be read" in str(exc)
    # The dead connection was not handed to the next request.
    assert (await gathered_warrant(reads, activity)).status is WarrantStatus.ACTIVE


# --- The warrant read with the session (read_case_session's join) ------------------------


async def open_bound_session(engine: AsyncEngine, warrant_id: str | None) -> str:
    """officer-1 of Metro PD (enrolled if not yet), with a session in case 2026-1 bound to
    `warrant_id`; its access key id."""
    async with session_factory(engine)() as db, db.begin():
        officer = await db.get(PrincipalRow, "officer-1")
        if officer is None:
            enrolled = await create_principal(
                db,
                principal_id="officer-1",
                name="Officer",
                agency="Metro PD",
                roles=[Role.OFFICER],
                now=NOW,
            )
        else:
            enrolled = principal_from_row(officer)
        issued = await open_case_session(
            db,
            master_key=MASTER,
            principal=enrolled,
            context=CaseContext(
                purpose="criminal_investigation", case_number="2026-1", warrant_id=warrant_id
            ),
            ttl=timedelta(hours=1),
            max_ttl=timedelta(hours=2),
            now=NOW,
        )
    return issued.access_key_id


async def read_session(reads: RequestReader, key: str) -> BoundSession:
    session = await read_case_session(reads, key)
    assert session is not None
    return session


async def test_the_warrant_read_with_the_session_is_the_one_gather_reads(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    """Each status found through the session's join is the one gather's own read finds, on
    every path of the reader (asyncpg, a SQLite file) and through SQLAlchemy."""
    async with session_factory(registry)() as db, db.begin():
        await register_warrant(db, "W-OLD", now=NOW - timedelta(days=3))
        await register_warrant(db, "W-QUASHED")
        await revoke_warrant(db, warrant_id="W-QUASHED", reason="quashed", now=NOW)
    expected = {
        "W-1": WarrantStatus.ACTIVE,
        "W-OLD": WarrantStatus.EXPIRED,
        "W-QUASHED": WarrantStatus.REVOKED,
        "W-404": WarrantStatus.UNKNOWN,
        None: WarrantStatus.NONE,
    }
    for warrant_id, status_found in expected.items():
        key = await open_bound_session(registry, warrant_id)
        joined = await read_session(reads, key)
        if warrant_id is None:
            assert joined.warrant is None
        else:
            assert joined.warrant is not None and joined.warrant.warrant_id == warrant_id
        async with registry.connect() as connection:
            assert await load_case_session(connection, key) == joined
        context = await gathered_context(reads, joined)
        assert context.warrant.status is status_found
        # Gather's own read, without the row the session brought: the same, field for field.
        own = await gathered_context(reads, joined.model_copy(update={"warrant": None}))
        assert own.model_dump(mode="json") == context.model_dump(mode="json")


async def test_gather_judges_the_row_read_with_the_session_and_reads_no_other(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    key = await open_bound_session(registry, "W-1")
    session = await read_session(reads, key)
    async with registry.begin() as connection:  # a read of the registry would fail now
        await connection.execute(sa.text("ALTER TABLE warrants RENAME TO warrants_away"))
    try:
        assert (await gathered_context(reads, session)).warrant.status is WarrantStatus.ACTIVE
    finally:
        async with registry.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE warrants_away RENAME TO warrants"))


async def test_a_warrant_revoked_before_the_request_is_refused_on_the_joined_read(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    key = await open_bound_session(registry, "W-1")
    for _ in range(3):  # every pooled connection warm, its statement prepared
        session = await read_session(reads, key)
        assert (await gathered_context(reads, session)).warrant.status is WarrantStatus.ACTIVE
    async with session_factory(registry)() as db, db.begin():
        await revoke_warrant(db, warrant_id="W-1", reason="quashed", now=NOW)
    session = await read_session(reads, key)
    assert (await gathered_context(reads, session)).warrant.status is WarrantStatus.REVOKED


async def test_a_registry_that_cannot_be_read_fails_the_session_read_with_it(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    key = await open_bound_session(registry, "W-1")
    async with registry.begin() as connection:
        await connection.execute(sa.text("ALTER TABLE warrants RENAME TO warrants_away"))
    try:
        with pytest.raises(StorageUnavailable):
            await read_case_session(reads, key)
    finally:
        async with registry.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE warrants_away RENAME TO warrants"))
    assert (await read_session(reads, key)).warrant is not None


async def test_a_warrant_named_by_header_is_read_by_gather(
    registry: AsyncEngine, reads: RequestReader
) -> None:
    async with session_factory(registry)() as db, db.begin():
        await register_warrant(db, "W-2")
        await revoke_warrant(db, warrant_id="W-2", reason="quashed", now=NOW)
    # A session naming no warrant: the header's is read, at this request.
    unbound = await read_session(reads, await open_bound_session(registry, None))
    context = await gathered_context(reads, unbound, {"x-facegate-warrant": "W-2"})
    assert (context.warrant_id, context.warrant.id) == ("W-2", "W-2")
    assert context.warrant.status is WarrantStatus.REVOKED
    # A session bound to W-1: its warrant holds, the header's is a conflict.
    bound = await read_session(reads, await open_bound_session(registry, "W-1"))
    context = await gathered_context(reads, bound, {"x-facegate-warrant": "W-2"})
    assert (context.warrant.id, context.warrant.status) == ("W-1", WarrantStatus.ACTIVE)
    assert context.conflicts == ["warrant_id"]
    # A row brought for another warrant than the one judged is not used: gather reads.
    stale = bound.model_copy(update={"warrant": PrefetchedWarrant("W-2", None)})
    assert (await gathered_context(reads, stale)).warrant.status is WarrantStatus.ACTIVE
