"""What the audit log service takes and gives back: the shapes the API and CLI use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
    # One of the record's reason codes (a refusal's, say `warrant_required`): a code, so
    # letters, digits and `_.:-` only, which the query matches as one list element.
    reason_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    legal_basis: str | None = None
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
    # Found by the tree verifier (gateway.audit.verifier):
    INSERTED = "inserted"  # an entry the checkpoint does not have, or a seq given twice
    TRUNCATED = "truncated"  # an export line cut short, or fewer entries than signed
    MALFORMED = "malformed"  # a line that is not a JSON record with a seq
    ROOT_MISMATCH = "root_mismatch"  # entries do not hash to the signed root; not pinpointed
    INCONSISTENT = "inconsistent"  # an older checkpoint is not a prefix of this tree
    BAD_CHECKPOINT = "bad_checkpoint"  # malformed, or not signed by the key given


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


class StoredCheckpoint(BaseModel):
    """A checkpoint as the log keeps it: ``note`` is the signed note, byte for byte."""

    tree_size: int
    root_hash: str  # base64, as in the note
    note: str
    created_at: datetime


class InclusionProof(BaseModel):
    """RFC 9162 inclusion proof: hashes leaf first, base64."""

    seq: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str]


class ConsistencyProof(BaseModel):
    """RFC 9162 consistency proof from tree size ``first`` to ``second``, base64."""

    first: int
    second: int
    hashes: list[str]


class LogEntry(BaseModel):
    """One entry as a leaf: ``leaf`` is the exact RFC 8785 JSON the tree hashes."""

    seq: int
    leaf: str


class LogEntryPage(BaseModel):
    entries: list[LogEntry]


class TreeReport(BaseModel):
    """The result of checking entries against a signed checkpoint (gateway.audit.verifier).

    ``ok`` only if every entry is well formed and in place, the entries hash to the
    checkpoint's root, and every older checkpoint given is a prefix of the same tree.
    ``first_bad_seq`` names the first entry found wrong, when it can be pinned down.
    """

    ok: bool
    tree_size: int | None = None
    root_hash: str | None = None
    entries_checked: int = 0
    older_checkpoints_checked: int = 0
    first_bad_seq: int | None = None
    problem: VerifyProblem | None = None
    detail: str | None = None


class HandoverRead(BaseModel):
    """A key handover: the checkpoint (a signed note) that hands the log to the next key."""

    tree_size: int
    note: str


class KeyChainRead(BaseModel):
    """The log's keys, oldest first (verifier key strings), and the handovers between them."""

    keys: list[str]
    handovers: list[HandoverRead]
