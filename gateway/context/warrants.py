"""The warrant registry: warrants and court orders, and what one authorises for a request."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import JSON, Boolean, String, Text, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.auth.models import PrincipalRow
from gateway.db import Base, RequestReader, UTCDateTime, stored_utc
from gateway.errors import MalformedRequest
from gateway.operations import FaceOperation, OperationKind
from gateway.policy.contract import WarrantFinding, WarrantStatus


class WarrantKind(StrEnum):
    WARRANT = "warrant"
    COURT_ORDER = "court_order"


class WarrantRow(Base):
    __tablename__ = "warrants"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    issuing_court: Mapped[str] = mapped_column(String(200))
    case_number: Mapped[str] = mapped_column(String(100), index=True)
    operations: Mapped[list[str]] = mapped_column(JSON)
    collections: Mapped[list[str]] = mapped_column(JSON)
    realtime: Mapped[bool] = mapped_column(Boolean, default=False)
    subject_description: Mapped[str | None] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    # The agency whose officers may use it; None only for a warrant registered before
    # warrants were bound to agencies, which the policy refuses (migration 0004).
    agency: Mapped[str | None] = mapped_column(String(200))
    officers: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: any of the agency
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class WarrantCreate(BaseModel):
    """What an admin enters from the signed document."""

    id: str = Field(min_length=1, max_length=100)
    kind: WarrantKind
    issuing_court: str = Field(min_length=1, max_length=200)
    case_number: str = Field(min_length=1, max_length=100)
    operations: list[OperationKind] = Field(min_length=1)
    collections: list[str] = Field(default_factory=list)  # empty: any collection
    realtime: bool = False
    subject_description: str | None = None
    valid_from: datetime
    valid_until: datetime
    # The agency it is issued to; through the management API, the registering admin's when
    # not stated. Only that agency's officers may use it.
    agency: str | None = Field(default=None, min_length=1, max_length=200)
    # Principal ids of the officers it names; empty: any officer of the agency.
    officers: list[str] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _check(self) -> WarrantCreate:
        if self.valid_from.tzinfo is None or self.valid_until.tzinfo is None:
            raise ValueError("valid_from and valid_until need a timezone")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.realtime and self.kind is not WarrantKind.COURT_ORDER:
            raise ValueError("only a court order can authorise real-time use")
        return self


class WarrantRead(WarrantCreate):
    model_config = ConfigDict(from_attributes=True)

    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


async def create_warrant(
    db: AsyncSession, *, warrant: WarrantCreate, created_by: str, now: datetime
) -> WarrantRead:
    """Register a warrant. It must name its agency; each officer it names must be an
    enrolled, enabled officer of that agency (a typo would otherwise bind it to no one, or
    to someone of another agency)."""
    if await db.get(WarrantRow, warrant.id) is not None:
        raise MalformedRequest(f"warrant {warrant.id!r} already exists")
    if warrant.agency is None:
        raise MalformedRequest("a warrant needs the agency it is issued to")
    await _check_officers(db, warrant)
    row = WarrantRow(
        **warrant.model_dump(exclude={"operations", "kind"}),
        kind=warrant.kind.value,
        operations=[k.value for k in warrant.operations],
        created_by=created_by,
        created_at=now,
    )
    db.add(row)
    await db.flush()
    return WarrantRead.model_validate(row)


async def _check_officers(db: AsyncSession, warrant: WarrantCreate) -> None:
    for officer in warrant.officers:
        row = await db.get(PrincipalRow, officer)
        if row is None or row.disabled_at is not None or "officer" not in row.roles:
            raise MalformedRequest(f"warrant {warrant.id!r} names {officer!r}, not an officer")
        if row.agency != warrant.agency:
            raise MalformedRequest(
                f"warrant {warrant.id!r} is issued to {warrant.agency} and names {officer!r},"
                f" an officer of {row.agency}"
            )


async def list_warrants(db: AsyncSession, *, case_number: str | None = None) -> list[WarrantRead]:
    statement = select(WarrantRow).order_by(WarrantRow.created_at)
    if case_number is not None:
        statement = statement.where(WarrantRow.case_number == case_number)
    return [WarrantRead.model_validate(row) for row in await db.scalars(statement)]


async def revoke_warrant(
    db: AsyncSession, *, warrant_id: str, reason: str, now: datetime
) -> WarrantRead:
    row = await db.get(WarrantRow, warrant_id)
    if row is None:
        raise MalformedRequest(f"no warrant {warrant_id!r}")
    if row.revoked_at is None:
        row.revoked_at = now
        row.revoked_reason = reason
    await db.flush()
    return WarrantRead.model_validate(row)


# Built once, columns rather than an ORM object: it runs on every vendor request.
_FIND_WARRANT = select(
    WarrantRow.id,
    WarrantRow.kind,
    WarrantRow.issuing_court,
    WarrantRow.case_number,
    WarrantRow.operations,
    WarrantRow.collections,
    WarrantRow.realtime,
    WarrantRow.valid_from,
    WarrantRow.valid_until,
    WarrantRow.revoked_at,
    WarrantRow.agency,
    WarrantRow.officers,
    WarrantRow.created_by,
).where(WarrantRow.id == bindparam("warrant_id"))

# The same SELECT for the drivers themselves (RequestReader): through SQLAlchemy's
# execution and result handling the read cost ~0.8 ms of CPU on PostgreSQL, the statement
# itself ~0.1 ms (issue 17). asyncpg prepares it once per connection, sqlite3 keeps it in
# its statement cache. JSON columns come back as text (cast on PostgreSQL, whatever codecs
# the connection has; stored so on SQLite) and are decoded here as SQLAlchemy's JSON type
# decodes them.
_JSON_COLUMNS: Final = frozenset(
    c.name for c in _FIND_WARRANT.selected_columns if isinstance(c.type, JSON)
)
_TIME_COLUMNS: Final = frozenset(
    c.name for c in _FIND_WARRANT.selected_columns if isinstance(c.type, UTCDateTime)
)
_DRIVER_FIND_WARRANT: Final = (
    "SELECT "  # noqa: S608 (the model's column names; the id goes as a parameter)
    + ", ".join(
        f"{c.name}{{cast}}" if c.name in _JSON_COLUMNS else c.name
        for c in _FIND_WARRANT.selected_columns
    )
    + " FROM warrants WHERE id = {parameter}"
)
_PG_FIND_WARRANT: Final = _DRIVER_FIND_WARRANT.format(cast="::text", parameter="$1")
_SQLITE_FIND_WARRANT: Final = _DRIVER_FIND_WARRANT.format(cast="", parameter="?")


def driver_warrant_columns(table: str, *, postgresql: bool) -> str:
    """`_DRIVER_FIND_WARRANT`'s select list on the warrants table named `table` in a
    joined statement (gateway.auth.sessions reads the session's warrant with the session):
    `WARRANT_COLUMNS` values, which `prefetched_warrant` interprets."""
    cast = "::text" if postgresql else ""
    return ", ".join(
        f"{table}.{c.name}{cast}" if c.name in _JSON_COLUMNS else f"{table}.{c.name}"
        for c in _FIND_WARRANT.selected_columns
    )


# The warrant's columns in a statement that reads it with something else: as SQLAlchemy
# columns, labelled so that they clash with no other table's (gateway.auth.sessions).
WARRANT_COLUMNS: Final = tuple(
    c.label(f"registered_warrant_{c.name}") for c in _FIND_WARRANT.selected_columns
)


class RegisteredWarrant(NamedTuple):
    """One warrant as registered, from either read; immutable (its lists as tuples), so
    that what is judged from it can be kept by its value (`_finding`)."""

    id: str
    kind: str
    issuing_court: str
    case_number: str
    operations: tuple[str, ...]
    collections: tuple[str, ...]
    realtime: bool
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None
    agency: str | None
    officers: tuple[str, ...] | None
    created_by: str

    @classmethod
    def of_columns(cls, values: Sequence[Any]) -> RegisteredWarrant:
        """From `_FIND_WARRANT`'s columns as SQLAlchemy decodes them (JSON as lists)."""
        fields = dict(zip(cls._fields, values, strict=True))
        for name in _JSON_COLUMNS:
            if fields[name] is not None:
                fields[name] = tuple(fields[name])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class PrefetchedWarrant:
    """The registry's row for `warrant_id` (None: no such warrant), read at this request
    in the statement that read the case session bound to it, so not a cache: a revocation
    committed before the request is in it, as in `find_warrant`'s own read.

    `find_warrant` takes it in place of its read when it is for the warrant the request
    names; a request naming another (by X-Facegate-Warrant, when the session names none)
    is read as before."""

    warrant_id: str
    row: RegisteredWarrant | None


def prefetched_warrant(
    warrant_id: str | None, values: Sequence[Any], *, from_driver: bool
) -> PrefetchedWarrant | None:
    """What a statement joining the warrants table on `warrant_id` (a LEFT JOIN: no
    warrant reads as NULLs) found: `values` are its `driver_warrant_columns` (as asyncpg
    or sqlite3 return them, `from_driver`) or its `WARRANT_COLUMNS` (through SQLAlchemy).
    None when no warrant was named."""
    if warrant_id is None:
        return None
    if values[0] is None:  # the primary key: the join found no warrant
        return PrefetchedWarrant(warrant_id, None)
    row = _from_driver_row(values) if from_driver else RegisteredWarrant.of_columns(values)
    return PrefetchedWarrant(warrant_id, row)


async def _registered(
    db: RequestReader | AsyncConnection | AsyncSession, warrant_id: str
) -> RegisteredWarrant | None:
    """The warrant as the registry holds it now: read on every request, never cached, so a
    revocation refuses the very next request."""
    if isinstance(db, RequestReader):
        if db.on_asyncpg:  # a connection of the reader's own pool
            return _from_driver_row(await db.fetchrow(_PG_FIND_WARRANT, warrant_id))
        if db.on_sqlite_file:  # the reader's own sqlite3 connection
            rows = db.sqlite_fetchall(_SQLITE_FIND_WARRANT, warrant_id)
            return _from_driver_row(rows[0] if rows else None)
        async with db.engine.connect() as connection:
            return await _registered(connection, warrant_id)
    # Off the request path (a caller's own connection or session): SQLAlchemy's read.
    row = (await db.execute(_FIND_WARRANT, {"warrant_id": warrant_id})).one_or_none()
    return None if row is None else RegisteredWarrant.of_columns(row)


# Warrants whose decoded rows and findings are kept, by their stored values: far more than
# a replica's warrants in use at once; past it the least recent is decoded again.
_WARRANTS_KEPT = 1024


def _from_driver_row(row: Sequence[Any] | None) -> RegisteredWarrant | None:
    """`_DRIVER_FIND_WARRANT`'s row (asyncpg's Record or sqlite3's tuple) as
    `_FIND_WARRANT`'s reads through SQLAlchemy."""
    return None if row is None else _decoded(tuple(row))


# A pure function of the values read at this request (revoked_at among them), so keeping
# it by them is no cache of the registry: a revocation is other values, decoded anew. The
# JSON text and the times cost more to decode than the read's own Python (issue 17).
@functools.lru_cache(maxsize=_WARRANTS_KEPT)
def _decoded(row: tuple[Any, ...]) -> RegisteredWarrant:
    values = dict(zip(RegisteredWarrant._fields, row, strict=True))
    for name in _JSON_COLUMNS:
        text = values[name]
        values[name] = None if text is None else tuple(json.loads(text))
    for name in _TIME_COLUMNS:
        if values[name] is not None:  # as UTCDateTime reads it back: aware, in UTC
            values[name] = stored_utc(values[name])
    values["realtime"] = bool(values["realtime"])  # SQLite's 0 or 1
    return RegisteredWarrant(**values)


async def find_warrant(
    db: RequestReader | AsyncConnection | AsyncSession,
    *,
    warrant_id: str | None,
    operation: FaceOperation,
    case_number: str | None,
    now: datetime,
    prefetched: PrefetchedWarrant | None = None,
) -> WarrantFinding:
    """The warrant a request names, as found: the policy decides what each status means.
    Read from `db`: the request path's reader, or a connection or session (which sees
    what its transaction wrote); not read when `prefetched` is for `warrant_id` (the
    session's read brought the row, at this request), whose row is judged instead.

    Database errors propagate as the driver raised them (the caller's storage edge,
    `map_database_errors`, maps them): nothing is found when the registry cannot be read.
    """
    if not warrant_id:
        return WarrantFinding(status=WarrantStatus.NONE)
    if prefetched is not None and prefetched.warrant_id == warrant_id:
        row = prefetched.row
    else:
        row = await _registered(db, warrant_id)
    if row is None:
        return WarrantFinding(status=WarrantStatus.UNKNOWN, id=warrant_id)
    return _finding(row, _status(row, operation=operation, case_number=case_number, now=now))


# One WarrantFinding per (row as read, status), shared by the policy inputs judged on it,
# which nothing writes to (PolicyInput is frozen once gathered, as `vendor_facts`' are):
# building and checking one cost more than judging the row. The status is judged at each
# request, from the row read at it; only its rendering is kept.
@functools.lru_cache(maxsize=_WARRANTS_KEPT)
def _finding(row: RegisteredWarrant, status: WarrantStatus) -> WarrantFinding:
    return WarrantFinding(
        status=status,
        id=row.id,
        kind=row.kind,
        issuing_court=row.issuing_court,
        case_number=row.case_number,
        operations=list(row.operations),
        collections=list(row.collections),
        realtime=row.realtime,
        valid_from=row.valid_from.isoformat(),
        valid_until=row.valid_until.isoformat(),
        agency=row.agency,
        officers=list(row.officers or []),
        created_by=row.created_by,
    )


def _status(
    row: RegisteredWarrant, *, operation: FaceOperation, case_number: str | None, now: datetime
) -> WarrantStatus:
    if row.revoked_at is not None:
        return WarrantStatus.REVOKED
    if not row.valid_from <= now < row.valid_until:
        return WarrantStatus.EXPIRED
    covers_case = case_number == row.case_number
    # A comparison against stored identities may be identification (the policy decides, by
    # how many identities the case has compared): the warrant is judged for that.
    kind = OperationKind.IDENTIFY if operation.compared_identities else operation.kind
    covers_kind = kind.value in row.operations
    if kind is OperationKind.IDENTIFY and operation.collection is None:
        # An identification names the collection it searches: one over faces named ad hoc
        # (Azure FindSimilar over faceIds) names none, and no warrant covers that.
        return WarrantStatus.OUT_OF_SCOPE
    # Any other operation naming no collection (e.g. starting a processor set up earlier,
    # when its collection was checked) is not held to the warrant's collection list.
    covers_collection = (
        not row.collections
        or operation.collection is None
        or operation.collection in row.collections
    )
    if covers_case and covers_kind and covers_collection:
        return WarrantStatus.ACTIVE
    return WarrantStatus.OUT_OF_SCOPE
