"""Record queries: audit entries by their fields, a page at a time, with opaque cursors."""

from __future__ import annotations

import base64
import binascii
from typing import Final

from sqlalchemy import ColumnElement, String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.models import AuditLogEntry
from gateway.audit.reads import MAX_PAGE_SIZE
from gateway.audit.schemas import AuditEntryRead, AuditPage, AuditQuery
from gateway.audit.stores import map_database_errors
from gateway.errors import MalformedRequest

DEFAULT_PAGE_SIZE: Final = 100
_MAX_CURSOR_LENGTH: Final = 32


class InvalidQuery(MalformedRequest):
    """A query this log cannot answer: a cursor it did not issue, a limit out of range.
    The caller's mistake, so a MalformedRequest: the management API answers it (400) as it
    answers any other, and the CLI prints its message."""


class RecordQuery:
    """Queries of the audit entries over ``sessions``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def query(
        self,
        filters: AuditQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> AuditPage:
        """Entries matching ``filters``, ascending by seq, at most ``limit`` per page.

        ``cursor`` is the ``next_cursor`` of the previous page. Raises MalformedRequest
        for a cursor this log did not issue or a limit outside 1..MAX_PAGE_SIZE, and
        AuditUnavailable if the database fails.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        after = 0 if cursor is None else decode_cursor(cursor)
        statement = (
            select(AuditLogEntry)
            .where(AuditLogEntry.seq > after, *_conditions(filters))
            .order_by(AuditLogEntry.seq)
            .limit(limit + 1)  # one more than asked shows whether a next page exists
        )
        with map_database_errors():
            async with self._sessions() as session:
                rows = (await session.scalars(statement)).all()
                entries = [AuditEntryRead.model_validate(row) for row in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(
            entries=entries,
            next_cursor=encode_cursor(entries[-1].seq) if more else None,
        )


def encode_cursor(seq: int) -> str:
    """An opaque page cursor: the last seq a page returned, urlsafe base64 without padding."""
    return base64.urlsafe_b64encode(str(seq).encode("ascii")).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The seq inside a cursor from ``encode_cursor``; InvalidQuery for anything else."""
    if not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
        raise InvalidQuery("the audit log cursor is not valid")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        decoded = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidQuery("the audit log cursor is not valid") from None
    if not decoded.isdigit() or encode_cursor(int(decoded)) != cursor:
        raise InvalidQuery("the audit log cursor is not valid")
    return int(decoded)


def _conditions(filters: AuditQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    # Pairs, not a dict: column attributes overload == and are not safe as dict keys.
    equal = (
        (AuditLogEntry.agency, filters.agency),
        (AuditLogEntry.officer, filters.officer),
        (AuditLogEntry.case_number, filters.case_number),
        (AuditLogEntry.decision, filters.decision),
        (AuditLogEntry.vendor, filters.vendor),
        (AuditLogEntry.operation, filters.operation),
        (AuditLogEntry.event_type, filters.event_type),
        (AuditLogEntry.legal_basis, filters.legal_basis),
    )
    conditions.extend(column == value for column, value in equal if value is not None)
    if filters.reason_code is not None:
        # reason_codes is a JSON list of strings, stored as text on SQLite and PostgreSQL
        # alike: the code in quotes is one whole element (a code holds no quote, see
        # AuditQuery), and autoescape keeps `_` and `%` literal rather than wildcards.
        as_text = cast(AuditLogEntry.reason_codes, String)
        conditions.append(as_text.contains(f'"{filters.reason_code}"', autoescape=True))
    if filters.time_from is not None:
        conditions.append(AuditLogEntry.time >= filters.time_from)
    if filters.time_until is not None:
        conditions.append(AuditLogEntry.time < filters.time_until)
    return conditions
