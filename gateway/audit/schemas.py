"""What the audit log service takes and gives back: the shapes the API and CLI use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gateway.audit.records import AuditRecord, EventType


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    """Where a record landed. Returned only once the entry is committed and durable."""

    seq: int
    record_hash: str  # hex SHA-256, see gateway.audit.chain


class AuditQuery(BaseModel):
    """The auditor's filters; every one given must match (AND). A FastAPI route can take
    this as query parameters with ``Annotated[AuditQuery, Query()]``.

    Unknown names are ignored rather than refused: FastAPI validates the whole query string
    against this model, so forbidding extras would refuse the route's own ``cursor`` and
    ``limit`` parameters too.
    """

    model_config = ConfigDict(frozen=True)

    agency: str | None = None
    officer: str | None = None
    case_number: str | None = None
    decision: str | None = None
    vendor: str | None = None
    operation: str | None = None
    event_type: EventType | None = None
    time_from: AwareDatetime | None = Field(default=None, description="inclusive")
    time_until: AwareDatetime | None = Field(default=None, description="exclusive")

    @model_validator(mode="after")
    def _window_is_ordered(self) -> AuditQuery:
        if self.time_from and self.time_until and self.time_from > self.time_until:
            raise ValueError("time_from must not be after time_until")
        return self


class AuditEntryRead(AuditRecord):
    """One entry as stored: the record, its position and its chain hashes."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    seq: int
    prev_hash: str
    record_hash: str


class AuditPage(BaseModel):
    """Entries in ascending seq order. ``next_cursor`` is None on the last page."""

    entries: list[AuditEntryRead]
    next_cursor: str | None


class VerifyProblem(StrEnum):
    MISSING = "missing"  # a seq is absent: a row was deleted, or the log does not start at 1
    OUT_OF_ORDER = "out_of_order"  # prev_hash does not name the entry before: reordered/replaced
    ALTERED = "altered"  # stored fields no longer hash to the stored record_hash


class VerifyReport(BaseModel):
    """The result of re-checking the whole chain from seq 1.

    ``entries_checked`` counts the entries found good before the first problem (all of them
    when ``ok``); ``head_hash`` is the record_hash of the last of those, to compare with a
    head noted earlier, since a chain alone cannot show that entries were cut off its end.
    """

    ok: bool
    entries_checked: int
    head_hash: str | None = None
    first_bad_seq: int | None = None
    problem: VerifyProblem | None = None
    detail: str | None = None
