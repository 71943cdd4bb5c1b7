"""AuditLog on real databases: append, read back, query, and verify a tampered chain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Query
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import chain, guards
from gateway.audit.log import AuditLog
from gateway.audit.query import InvalidQuery, RecordQuery, decode_cursor, encode_cursor
from gateway.audit.records import AuditRecord, EventType
from gateway.audit.schemas import AuditQuery, VerifyProblem
from gateway.db import create_engine, session_factory
from gateway.errors import AuditUnavailable
from gateway.migrate import upgrade_async
from tests.audit.conftest import checker_of, every_field_record, records_of

RecordFactory = Callable[..., AuditRecord]


async def tamper(engine: AsyncEngine, statement: str, **params: Any) -> None:
    """Run ``statement`` behind the append-only guards' back, as a database owner could."""
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
            await connection.execute(sa.text(statement), params)
            return
        for ddl in guards.remove_statements("sqlite"):
            await connection.exec_driver_sql(ddl)
        await connection.execute(sa.text(statement), params)
        for ddl in guards.install_statements("sqlite"):
            await connection.exec_driver_sql(ddl)


async def append_many(audit_log: AuditLog, make: RecordFactory, count: int) -> None:
    for index in range(count):
        await audit_log.append(make(request_id=f"req-{index + 1}"))


async def test_append_then_verify(
    audit_log: AuditLog, record_factory: RecordFactory, migrated_database_url: str
) -> None:
    first = await audit_log.append(record_factory(request_id="a"))
    second = await audit_log.append(record_factory(request_id="b"))

    assert (first.seq, second.seq) == (1, 2)
    assert first.record_hash == chain.entry_hash(1, record_factory(request_id="a"), bytes(32)).hex()
    report = await checker_of(audit_log).verify()
    assert report.ok
    assert report.entries_checked == 2
    assert report.head_hash == second.record_hash
    assert report.first_bad_seq is None and report.problem is None

    # Committed when append returned: another engine (another process, say) sees both.
    other = create_engine(migrated_database_url)
    try:
        page = await RecordQuery(session_factory(other)).query(AuditQuery())
    finally:
        await other.dispose()
    assert [entry.seq for entry in page.entries] == [1, 2]
    assert page.entries[1].prev_hash == first.record_hash


async def test_empty_log_verifies(audit_log: AuditLog) -> None:
    report = await checker_of(audit_log).verify()
    assert report.ok and report.entries_checked == 0 and report.head_hash is None


async def test_every_field_survives_storage(audit_log: AuditLog) -> None:
    record = every_field_record()
    appended = await audit_log.append(record)

    (entry,) = (await records_of(audit_log).query(AuditQuery())).entries
    stored = entry.model_dump(exclude={"seq", "prev_hash", "record_hash"})
    assert stored == record.model_dump()  # time compares as an instant
    assert entry.time.utcoffset() == timedelta(0)
    assert entry.record_hash == appended.record_hash
    assert (await checker_of(audit_log).verify()).ok


async def test_naive_time_is_refused_and_nothing_written(
    audit_log: AuditLog, record_factory: RecordFactory
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await audit_log.append(record_factory(time=datetime(2026, 3, 1, 9, 30)))
    assert (await checker_of(audit_log).verify()).entries_checked == 0
    assert (await audit_log.append(record_factory())).seq == 1


# --- query -------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

SEED: list[dict[str, Any]] = [
    {"agency": "metro-pd", "officer": "o1", "case_number": "C1", "decision": "allow",
     "vendor": "rekognition", "operation": "SearchFacesByImage", "event_type": EventType.DECISION},
    {"agency": "metro-pd", "officer": "o1", "case_number": "C1", "decision": None,
     "vendor": "rekognition", "operation": "SearchFacesByImage", "event_type": EventType.OUTCOME},
    {"agency": "metro-pd", "officer": "o2", "case_number": "C2", "decision": "deny",
     "vendor": "rekognition", "operation": "DetectFaces", "event_type": EventType.DECISION},
    {"agency": "state-police", "officer": "o3", "case_number": "C3", "decision": "allow",
     "vendor": "compreface", "operation": "recognize", "event_type": EventType.DECISION},
    {"agency": "state-police", "officer": "o3", "case_number": None, "decision": None,
     "vendor": None, "operation": None, "event_type": EventType.AUTH_FAILURE},
    {"agency": "metro-pd", "officer": "o1", "case_number": "C1", "decision": "allow",
     "vendor": "rekognition", "operation": "DetectFaces", "event_type": EventType.DECISION},
    {"agency": "metro-pd", "officer": "auditor-1", "case_number": None, "decision": None,
     "vendor": None, "operation": None, "event_type": EventType.AUDIT_READ},
    {"agency": "metro-pd", "officer": "o2", "case_number": "C2", "decision": "error",
     "vendor": "rekognition", "operation": "SearchFacesByImage", "event_type": EventType.DECISION},
]  # fmt: skip


def seed_time(index: int) -> datetime:
    return T0 + timedelta(minutes=10 * index)


async def seed(audit_log: AuditLog, make: RecordFactory) -> None:
    for index, fields in enumerate(SEED):
        await audit_log.append(make(request_id=f"req-{index}", time=seed_time(index), **fields))


def expected_seqs(predicate: Callable[[int, dict[str, Any]], bool]) -> list[int]:
    return [index + 1 for index, fields in enumerate(SEED) if predicate(index, fields)]


async def all_pages(audit_log: AuditLog, filters: AuditQuery, limit: int) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        page = await records_of(audit_log).query(filters, cursor=cursor, limit=limit)
        pages.append([entry.seq for entry in page.entries])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_query_each_filter(audit_log: AuditLog, record_factory: RecordFactory) -> None:
    await seed(audit_log, record_factory)
    plus_one = timezone(timedelta(hours=1))
    cases: list[tuple[AuditQuery, list[int]]] = [
        (AuditQuery(), expected_seqs(lambda i, f: True)),
        (AuditQuery(agency="state-police"),
         expected_seqs(lambda i, f: f["agency"] == "state-police")),
        (AuditQuery(officer="o1"), expected_seqs(lambda i, f: f["officer"] == "o1")),
        (AuditQuery(case_number="C2"), expected_seqs(lambda i, f: f["case_number"] == "C2")),
        (AuditQuery(decision="allow"), expected_seqs(lambda i, f: f["decision"] == "allow")),
        (AuditQuery(vendor="compreface"), expected_seqs(lambda i, f: f["vendor"] == "compreface")),
        (AuditQuery(operation="DetectFaces"),
         expected_seqs(lambda i, f: f["operation"] == "DetectFaces")),
        (AuditQuery(event_type=EventType.DECISION),
         expected_seqs(lambda i, f: f["event_type"] == EventType.DECISION)),
        (AuditQuery(time_from=seed_time(3)), expected_seqs(lambda i, f: i >= 3)),
        (AuditQuery(time_until=seed_time(3)), expected_seqs(lambda i, f: i < 3)),
        # The same instants written in another zone select the same entries.
        (AuditQuery(time_from=seed_time(2).astimezone(plus_one),
                    time_until=seed_time(5).astimezone(plus_one)),
         expected_seqs(lambda i, f: 2 <= i < 5)),
        (AuditQuery(agency="metro-pd", officer="o1", decision="allow", vendor="rekognition"),
         expected_seqs(lambda i, f: f["agency"] == "metro-pd" and f["officer"] == "o1"
                       and f["decision"] == "allow" and f["vendor"] == "rekognition")),
        (AuditQuery(agency="nobody"), []),
    ]  # fmt: skip
    for filters, expected in cases:
        page = await records_of(audit_log).query(filters, limit=100)
        got = [entry.seq for entry in page.entries]
        assert got == expected, filters
        assert page.next_cursor is None
    assert all(len(expected) > 0 for _, expected in cases[:-1])


async def test_cursor_pages_through_matches(
    audit_log: AuditLog, record_factory: RecordFactory
) -> None:
    await seed(audit_log, record_factory)
    metro = AuditQuery(agency="metro-pd")
    matches = expected_seqs(lambda i, f: f["agency"] == "metro-pd")
    assert len(matches) == 6

    assert await all_pages(audit_log, metro, limit=4) == [matches[:4], matches[4:]]
    # An exact multiple of the page size ends without an empty extra page.
    assert await all_pages(audit_log, metro, limit=3) == [matches[:3], matches[3:]]
    assert await all_pages(audit_log, metro, limit=1) == [[seq] for seq in matches]
    assert await all_pages(audit_log, AuditQuery(), limit=3) == [[1, 2, 3], [4, 5, 6], [7, 8]]


async def test_cursor_sees_entries_appended_after_it(
    audit_log: AuditLog, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 3)
    first = await records_of(audit_log).query(AuditQuery(), limit=2)
    assert first.next_cursor is not None
    await append_many(audit_log, record_factory, 2)
    rest = await records_of(audit_log).query(AuditQuery(), cursor=first.next_cursor, limit=10)
    assert [entry.seq for entry in rest.entries] == [3, 4, 5]


@pytest.mark.parametrize(
    "cursor",
    ["", "not base64!", "YWJj", "LTE", "MQ==", "M", "=" * 8, "A" * 40, "MDAx", "w6k"],
    ids=["empty", "not-base64", "letters", "negative", "padded", "bad-length", "padding",
         "too-long", "leading-zeros", "non-ascii"],
)  # fmt: skip
def test_bad_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidQuery, match="cursor"):
        decode_cursor(cursor)


def test_cursor_round_trips() -> None:
    for seq in (0, 1, 9, 10, 123456789, 2**62):
        assert decode_cursor(encode_cursor(seq)) == seq


async def test_query_refuses_bad_cursor_and_limit(audit_log: AuditLog) -> None:
    with pytest.raises(InvalidQuery, match="cursor"):
        await records_of(audit_log).query(AuditQuery(), cursor="not base64!")
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidQuery, match="limit"):
            await records_of(audit_log).query(AuditQuery(), limit=limit)


def test_query_model_validates_its_parameters() -> None:
    with pytest.raises(ValidationError):
        AuditQuery(time_from=datetime(2026, 3, 1))  # naive
    with pytest.raises(ValidationError, match="time_from"):
        AuditQuery(time_from=seed_time(2), time_until=seed_time(1))
    with pytest.raises(ValidationError):
        AuditQuery(event_type="not-an-event")


# --- verify finds tampering ----------------------------------------------------------


async def test_verify_finds_an_altered_field(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 5)
    await tamper(engine, "UPDATE audit_log SET officer = 'someone-else' WHERE seq = 3")

    report = await checker_of(audit_log).verify(batch_size=2)
    assert not report.ok
    assert (report.first_bad_seq, report.problem) == (3, VerifyProblem.ALTERED)
    assert report.entries_checked == 2
    assert report.detail is not None and "seq 3" in report.detail


async def test_verify_finds_an_altered_time(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 3)
    async with engine.connect() as connection:
        stored = await connection.scalar(sa.text("SELECT time FROM audit_log WHERE seq = 2"))
    one_microsecond_later = (
        stored + timedelta(microseconds=1)
        if isinstance(stored, datetime)
        else stored[:-1] + str((int(stored[-1]) + 1) % 10)  # SQLite keeps text
    )
    await tamper(engine, "UPDATE audit_log SET time = :t WHERE seq = 2", t=one_microsecond_later)

    report = await checker_of(audit_log).verify()
    assert (report.first_bad_seq, report.problem) == (2, VerifyProblem.ALTERED)


async def test_verify_finds_a_rehashed_forgery_at_the_next_link(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    # A forger who also rewrites seq 3's record_hash still breaks seq 4's prev_hash.
    await append_many(audit_log, record_factory, 5)
    page = await records_of(audit_log).query(AuditQuery(), limit=3)
    original = page.entries[2]
    forged = AuditRecord.model_validate(
        {**original.model_dump(include=set(AuditRecord.model_fields)), "officer": "someone-else"}
    )
    forged_hash = chain.entry_hash(3, forged, bytes.fromhex(original.prev_hash)).hex()
    await tamper(
        engine,
        "UPDATE audit_log SET officer = 'someone-else', record_hash = :h WHERE seq = 3",
        h=forged_hash,
    )

    report = await checker_of(audit_log).verify()
    assert (report.first_bad_seq, report.problem) == (4, VerifyProblem.OUT_OF_ORDER)
    assert report.entries_checked == 3
    assert report.head_hash == forged_hash


async def test_verify_finds_a_deleted_row_as_a_gap(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 5)
    # seq 3 starts the second batch of two: the gap sits on a batch boundary.
    await tamper(engine, "DELETE FROM audit_log WHERE seq = 3")

    report = await checker_of(audit_log).verify(batch_size=2)
    assert not report.ok
    assert (report.first_bad_seq, report.problem) == (3, VerifyProblem.MISSING)
    assert report.entries_checked == 2


async def test_verify_finds_the_first_row_deleted(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 3)
    await tamper(engine, "DELETE FROM audit_log WHERE seq IN (1, 2)")

    report = await checker_of(audit_log).verify()
    assert (report.first_bad_seq, report.problem) == (1, VerifyProblem.MISSING)
    assert report.entries_checked == 0
    assert report.detail is not None and "seqs 1..2" in report.detail


async def test_verify_finds_a_stray_row_before_the_first(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 2)
    await tamper(
        engine,
        "INSERT INTO audit_log SELECT 0, time, request_id, event_type, agency, officer, key_id,"
        " client_address, vendor, operation, operation_kind, collection, purpose, case_number,"
        " offense, legal_basis, warrant_id, decision, reason_codes, obligations,"
        " policy_revision, probe_digests, upstream_status, match_count, top_similarity,"
        " latency_ms, detail, prev_hash, record_hash FROM audit_log WHERE seq = 1",
    )
    report = await checker_of(audit_log).verify()
    assert (report.first_bad_seq, report.problem) == (0, VerifyProblem.OUT_OF_ORDER)


async def test_verify_cannot_see_a_cut_tail_but_head_hash_shows_it(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    await append_many(audit_log, record_factory, 4)
    noted_head = (await checker_of(audit_log).verify()).head_hash
    await tamper(engine, "DELETE FROM audit_log WHERE seq = 4")

    report = await checker_of(audit_log).verify()
    assert report.ok and report.entries_checked == 3
    assert report.head_hash != noted_head


async def test_guards_are_back_after_tampering(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    # The tamper() helper must not leave the table unguarded for the other tests' sake.
    await append_many(audit_log, record_factory, 1)
    await tamper(engine, "UPDATE audit_log SET officer = 'x' WHERE seq = 1")
    with pytest.raises(sa.exc.DBAPIError, match=guards.APPEND_ONLY_MESSAGE):
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DELETE FROM audit_log")


# --- appending inside a caller's transaction ------------------------------------------


async def test_append_in_callers_transaction_commits_with_it(
    audit_log: AuditLog, engine: AsyncEngine, record_factory: RecordFactory
) -> None:
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE scratch (note TEXT)")
    sessions = session_factory(engine)

    async with sessions() as db, db.begin():
        await db.execute(sa.text("INSERT INTO scratch VALUES ('kept')"))
        first = await audit_log.append(record_factory(request_id="a"), db=db)
        second = await audit_log.append(record_factory(request_id="b"), db=db)
    assert (first.seq, second.seq) == (1, 2)

    with pytest.raises(RuntimeError, match="route failed"):
        async with sessions() as db, db.begin():
            await db.execute(sa.text("INSERT INTO scratch VALUES ('dropped')"))
            await audit_log.append(record_factory(request_id="c"), db=db)
            raise RuntimeError("route failed")

    async with engine.connect() as connection:
        notes = (await connection.execute(sa.text("SELECT note FROM scratch"))).scalars().all()
    assert notes == ["kept"]
    assert (await audit_log.append(record_factory(request_id="d"))).seq == 3
    report = await checker_of(audit_log).verify()
    assert report.ok and report.entries_checked == 3


async def test_verify_names_a_row_sqlite_cannot_read_back(
    sqlite_url: str, record_factory: RecordFactory
) -> None:
    # SQLite stores any text in any column; PostgreSQL refuses such writes outright.
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        audit_log = AuditLog(session_factory(engine))
        await append_many(audit_log, record_factory, 4)
        await tamper(engine, "UPDATE audit_log SET time = 'garbage' WHERE seq = 3")
        report = await checker_of(audit_log).verify(batch_size=2)
        assert (report.first_bad_seq, report.problem) == (3, VerifyProblem.ALTERED)
        assert report.detail is not None and "garbage" in report.detail
        await tamper(engine, "UPDATE audit_log SET time = 'x', detail = '{bad' WHERE seq = 3")
        assert (await checker_of(audit_log).verify()).first_bad_seq == 3
    finally:
        await engine.dispose()


# --- durability settings are enforced, not assumed -----------------------------------


@pytest.mark.postgres
async def test_postgres_commit_is_synchronous_even_if_configured_off(
    postgres_url: str, record_factory: RecordFactory
) -> None:
    await upgrade_async(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(
                f'ALTER DATABASE "{database}" SET synchronous_commit = off'
            )
            await connection.commit()
        await engine.dispose()  # new connections pick up the database setting
        async with session_factory(engine)() as db, db.begin():
            assert await db.scalar(sa.text("SHOW synchronous_commit")) == "off"
            await AuditLog(session_factory(engine)).append(record_factory(), db=db)
            assert await db.scalar(sa.text("SHOW synchronous_commit")) == "on"
    finally:
        await engine.dispose()


async def test_sqlite_append_makes_its_connection_durable(
    sqlite_url: str, record_factory: RecordFactory
) -> None:
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        audit_log = AuditLog(session_factory(engine))
        async with session_factory(engine)() as db, db.begin():
            await db.execute(sa.text("PRAGMA synchronous = OFF"))
            await audit_log.append(record_factory(), db=db)  # opens the transaction itself
            assert await db.scalar(sa.text("PRAGMA synchronous")) == 2  # FULL

        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE scratch (note TEXT)")
        with pytest.raises(AuditUnavailable, match="synchronous"):
            async with session_factory(engine)() as db, db.begin():
                await db.execute(sa.text("PRAGMA synchronous = OFF"))
                await db.execute(sa.text("INSERT INTO scratch VALUES ('x')"))  # txn now open
                await audit_log.append(record_factory(), db=db)
        report = await checker_of(audit_log).verify()
        assert report.ok and report.entries_checked == 1
    finally:
        await engine.dispose()


async def test_query_model_works_as_fastapi_query_parameters() -> None:
    # The auditor route takes AuditQuery from the query string next to cursor and limit.
    app = FastAPI()

    @app.get("/records")
    def records(
        filters: Annotated[AuditQuery, Query()], cursor: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        return {"filters": filters.model_dump(mode="json", exclude_none=True), "limit": limit}

    params = {
        "agency": "metro-pd",
        "event_type": "decision",
        "time_from": "2026-03-01T10:00:00+01:00",
        "limit": "5",
        "cursor": "MQ",
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        ok = await client.get("/records", params=params)
        naive = await client.get("/records", params={"time_from": "2026-03-01T10:00:00"})
        unknown_event = await client.get("/records", params={"event_type": "nope"})

    assert ok.status_code == 200
    assert ok.json() == {
        "filters": {
            "agency": "metro-pd",
            "event_type": "decision",
            "time_from": "2026-03-01T10:00:00+01:00",
        },
        "limit": 5,
    }
    assert naive.status_code == 422
    assert unknown_event.status_code == 422


async def test_query_by_reason_code_and_legal_basis(
    audit_log: AuditLog, record_factory: RecordFactory
) -> None:
    given = [
        (["warrant_required"], "warrant"),
        (["warrantXrequired", "officer_unknown"], "consent"),  # `_` is no wildcard
        (["rate_limited", "warrant_required"], None),
        (["warrant"], "exigent"),  # a code that is a prefix of another is its own
        ([], "warrant"),
    ]
    for index, (codes, basis) in enumerate(given):
        await audit_log.append(
            record_factory(
                request_id=f"r-{index}", decision="deny", reason_codes=codes, legal_basis=basis
            )
        )
    query = records_of(audit_log).query

    async def seqs(filters: AuditQuery) -> list[int]:
        return [entry.seq for entry in (await query(filters, limit=100)).entries]

    assert await seqs(AuditQuery(reason_code="warrant_required")) == [1, 3]
    assert await seqs(AuditQuery(reason_code="warrant")) == [4]
    assert await seqs(AuditQuery(reason_code="officer_unknown")) == [2]
    assert await seqs(AuditQuery(reason_code="required")) == []
    assert await seqs(AuditQuery(legal_basis="warrant")) == [1, 5]
    assert await seqs(AuditQuery(reason_code="warrant_required", legal_basis="warrant")) == [1]
    with pytest.raises(ValidationError):
        AuditQuery(reason_code='a"b')  # a quote would end the element the query matches
