"""Disclosure: one case's entries out of the log, as a packet the defence can verify offline
(the format is ``packet.py``) and as a timeline a page at a time.

Nothing here hashes in its own way: leaves are ``chain.canonical_bytes``, proofs come from
the log's reader (``reads.py``) and are checked with ``merkle.verify_inclusion`` before they
are handed out, checkpoints are the log's own signed notes (``checkpoint.py``).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import chain, merkle, packet_html
from gateway.audit.checkpoint import Checkpoint, CheckpointError
from gateway.audit.log import AuditLog
from gateway.audit.models import AuditCheckpoint, AuditLogEntry
from gateway.audit.packet import (
    CHECKPOINT_FILE,
    DISCLOSE_ACTION,
    HTML_FILE,
    PACKET_FILE,
    PUBLIC_KEY_FILE,
    ConsistencyHint,
    DisclosurePacket,
    PacketCheckpoint,
    PacketEntry,
    PacketLog,
    fingerprint,
)
from gateway.audit.reads import LogReader
from gateway.audit.records import AuditRecord, EventType
from gateway.audit.schemas import AuditEntryRead
from gateway.audit.stores import map_database_errors
from gateway.case import canonical_identifier
from gateway.errors import AuditUnavailable, MalformedRequest

_BATCH: Final = 500
MAX_TIMELINE_PAGE: Final = 1000


class ReadRecord(Protocol):
    """Builds the audit read that records who asked for the packet or the timeline (the
    API's and the CLI's attribution differ, as for every admin action: ``admin.Actor``)."""

    def __call__(self, action: str, detail: Mapping[str, Any]) -> AuditRecord: ...


async def build_packet(
    *,
    audit: AuditLog,
    sessions: async_sessionmaker[AsyncSession],
    case_number: str,
    read_record: ReadRecord,
    now: datetime,
) -> DisclosurePacket:
    """The disclosure packet of ``case_number``: every entry of the case in the log now.

    In order, and why:

    1. The case's entries up to the current tree size are selected (``case_condition``).
    2. The disclosure record, an audit read naming the case and listing those seqs, is
       appended and committed. It is the packet's claim of completeness, and it makes the
       disclosure itself part of the case's record. Appending signs a checkpoint covering
       it, in the same transaction: that is the packet's one checkpoint, so a packet is
       always proved against a fresh head.
    3. Each entry's leaf is recomputed from its stored fields and its inclusion proof
       read, and both are checked against the checkpoint before they go into the packet:
       a log whose stored tree no longer matches its entries is refused here
       (AuditUnavailable: run ``facegate audit verify``), never disclosed as if sound.

    Raises AuditUnavailable if the log has no signing key or fails, MalformedRequest for
    a case number that is not of the case number's syntax (``gateway.case``).
    """
    case_number = _case(case_number)
    signer = audit.signer
    if signer is None:
        raise AuditUnavailable("this log has no signing key: a packet needs a signed checkpoint")
    as_of = await LogReader(audit.sessions).tree_size()
    rows = await _case_rows(sessions, case_number, up_to=as_of)
    seqs = [row.seq for row in rows]
    packet_id = uuid.uuid4().hex
    appended = await audit.append(
        read_record(
            DISCLOSE_ACTION,
            {
                "case_number": case_number,
                "packet_id": packet_id,
                "as_of_tree_size": as_of,
                "entry_count": len(seqs),
                "seqs": seqs,
            },
        )
    )
    stored = await _checkpoint_covering(sessions, appended.seq)
    if stored is None:
        raise AuditUnavailable("no signed checkpoint covers the disclosure record")
    try:
        checkpoint = Checkpoint.open(stored.note, signer.verifier)
    except CheckpointError as exc:
        raise AuditUnavailable(f"the log's checkpoint does not verify: {exc}") from None
    own = await _rows(sessions, [appended.seq])
    # One proof per entry, read one by one: a case's entries are few, a proof a few reads.
    entries = [await _proved(audit, row, checkpoint) for row in [*rows, *own]]
    hints = [
        await _consistency_hint(audit, sessions, row.seq, checkpoint)
        for row in rows
        if _is_disclosure(row, case_number)
    ]
    return DisclosurePacket(
        packet_id=packet_id,
        case_number=case_number,
        created_at=chain.format_time(now),
        log=PacketLog(
            origin=signer.name,
            public_key=str(signer.verifier),
            public_key_fingerprint=fingerprint(signer.verifier),
        ),
        checkpoint=PacketCheckpoint(
            note=stored.note,
            tree_size=checkpoint.size,
            root_hash=_b64(checkpoint.root_hash),
        ),
        as_of_tree_size=as_of,
        entry_count=len(seqs),
        seqs=seqs,
        disclosure_seq=appended.seq,
        entries=entries,
        consistency=[hint for hint in hints if hint is not None],
    )


def packet_files(packet: DisclosurePacket) -> dict[str, bytes]:
    """The packet directory's files by name (see ``packet.py``)."""
    document = json.dumps(packet.model_dump(mode="json"), indent=2, ensure_ascii=False)
    return {
        PACKET_FILE: (document + "\n").encode("utf-8"),
        HTML_FILE: packet_html.render(packet).encode("utf-8"),
        CHECKPOINT_FILE: packet.checkpoint.note.encode("utf-8"),
        PUBLIC_KEY_FILE: (packet.log.public_key + "\n").encode("utf-8"),
    }


def write_packet(packet: DisclosurePacket, directory: Path) -> None:
    """Write the packet's files into ``directory`` (created if need be)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in packet_files(packet).items():
        (directory / name).write_bytes(content)


def packet_zip(packet: DisclosurePacket) -> bytes:
    """The packet's files in one zip archive, inside a folder named after the case."""
    buffer = io.BytesIO()
    folder = f"disclosure-{_safe(packet.case_number)}-{packet.packet_id[:8]}"
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in packet_files(packet).items():
            archive.writestr(f"{folder}/{name}", content)
    return buffer.getvalue()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:64]


class TimelinePage(BaseModel):
    """A case's entries in time order (ties by seq); ``next_cursor`` None on the last page."""

    case_number: str
    entries: list[AuditEntryRead]
    next_cursor: str | None


async def case_timeline(
    *,
    sessions: async_sessionmaker[AsyncSession],
    case_number: str,
    cursor: str | None = None,
    limit: int = 100,
) -> TimelinePage:
    """One page of the entries of ``case_number`` in time order. ``cursor`` is the
    previous page's ``next_cursor``; MalformedRequest for one this did not issue."""
    case_number = _case(case_number)
    if not 1 <= limit <= MAX_TIMELINE_PAGE:
        raise MalformedRequest(f"limit must be between 1 and {MAX_TIMELINE_PAGE}")
    after = None if cursor is None else _decode_cursor(cursor)
    with map_database_errors():
        async with sessions() as session:
            condition = await case_condition(session, case_number)
            statement = select(AuditLogEntry).where(condition)
            if after is not None:
                time, seq = after
                statement = statement.where(
                    or_(
                        AuditLogEntry.time > time,
                        and_(AuditLogEntry.time == time, AuditLogEntry.seq > seq),
                    )
                )
            rows = (
                await session.scalars(
                    statement.order_by(AuditLogEntry.time, AuditLogEntry.seq).limit(limit + 1)
                )
            ).all()
            entries = [AuditEntryRead.model_validate(row) for row in rows[:limit]]
    last = entries[-1] if len(rows) > limit else None
    return TimelinePage(
        case_number=case_number,
        entries=entries,
        next_cursor=None if last is None else _encode_cursor(last.time, last.seq),
    )


async def case_condition(
    session: AsyncSession, case_number: str, *, up_to: int | None = None
) -> ColumnElement[bool]:
    """The SQL form of ``packet.belongs_to_case`` for ``case_number`` (entries up to seq
    ``up_to``): the warrants and sessions linked to the case are read first."""
    bound = [] if up_to is None else [AuditLogEntry.seq <= up_to]
    admin = AuditLogEntry.event_type == EventType.ADMIN_ACTION.value
    warrant_case = _detail("warrant", "case_number") == case_number
    warrants = set(
        (
            await session.scalars(
                select(AuditLogEntry.warrant_id)
                .where(AuditLogEntry.case_number == case_number, *bound)
                .where(AuditLogEntry.warrant_id.is_not(None))
                .distinct()
            )
        ).all()
    )
    warrants.update(
        (
            await session.scalars(
                select(_detail("warrant", "id")).where(admin, warrant_case, *bound).distinct()
            )
        ).all()
    )
    access_keys = (
        await session.scalars(
            select(_detail("access_key_id"))
            .where(admin, _detail("action") == "session.open")
            .where(_detail("case_number") == case_number, *bound)
        )
    ).all()
    in_detail = AuditLogEntry.event_type.in_(
        [EventType.ADMIN_ACTION.value, EventType.AUDIT_READ.value]
    )
    return and_(
        or_(
            AuditLogEntry.case_number == case_number,
            and_(in_detail, _detail("case_number") == case_number),
            and_(admin, warrant_case),
            and_(
                admin,
                _detail("action") == "warrant.revoke",
                _detail("warrant_id").in_(sorted(w for w in warrants if w is not None)),
            ),
            and_(
                admin,
                _detail("action") == "session.revoke",
                _detail("access_key_id").in_(sorted(k for k in access_keys if k is not None)),
            ),
        ),
        *bound,
    )


def _case(case_number: str) -> str:
    """The case number as sessions store it; one that no session could carry is refused."""
    try:
        return canonical_identifier(case_number, what="case number")
    except ValueError as exc:
        raise MalformedRequest(str(exc)) from None


def _detail(*path: str) -> ColumnElement[str]:
    index: str | tuple[str, ...] = path[0] if len(path) == 1 else path
    value: ColumnElement[str] = AuditLogEntry.detail[index].as_string()
    return value


async def _case_rows(
    sessions: async_sessionmaker[AsyncSession], case_number: str, *, up_to: int
) -> list[AuditLogEntry]:
    with map_database_errors():
        async with sessions() as session:
            condition = await case_condition(session, case_number, up_to=up_to)
            rows = (
                await session.scalars(
                    select(AuditLogEntry).where(condition).order_by(AuditLogEntry.seq)
                )
            ).all()
            session.expunge_all()
    return list(rows)


async def _rows(
    sessions: async_sessionmaker[AsyncSession], seqs: Sequence[int]
) -> list[AuditLogEntry]:
    with map_database_errors():
        async with sessions() as session:
            rows = (
                await session.scalars(
                    select(AuditLogEntry)
                    .where(AuditLogEntry.seq.in_(seqs))
                    .order_by(AuditLogEntry.seq)
                )
            ).all()
            session.expunge_all()
    return list(rows)


async def _checkpoint_covering(
    sessions: async_sessionmaker[AsyncSession], seq: int
) -> AuditCheckpoint | None:
    """The first checkpoint that covers ``seq``: the one signed in the batch that committed
    it. Earlier packets' checkpoints are found the same way, for the consistency hints."""
    with map_database_errors():
        async with sessions() as session:
            row = (
                await session.scalars(
                    select(AuditCheckpoint)
                    .where(AuditCheckpoint.tree_size >= seq)
                    .order_by(AuditCheckpoint.tree_size)
                    .limit(1)
                )
            ).one_or_none()
            if row is not None:
                session.expunge(row)
    return row


async def _proved(audit: AuditLog, row: AuditLogEntry, checkpoint: Checkpoint) -> PacketEntry:
    try:
        leaf = chain.canonical_bytes(row.seq, _record_of(row))
    except ValueError as exc:  # pydantic's ValidationError is one too
        raise AuditUnavailable(
            f"seq {row.seq} no longer makes a valid record ({str(exc).splitlines()[0]}):"
            " run `facegate audit verify`"
        ) from None
    proof = await LogReader(audit.sessions).inclusion_proof(row.seq, checkpoint.size)
    leaf_hash = merkle.leaf_hash(leaf)
    hashes = [base64.b64decode(h) for h in proof.hashes]
    if _b64(leaf_hash) != proof.leaf_hash:
        raise AuditUnavailable(
            f"seq {row.seq} no longer hashes to the leaf the log stored:"
            " run `facegate audit verify`"
        )
    try:
        merkle.verify_inclusion(
            leaf_hash, row.seq - 1, checkpoint.size, hashes, checkpoint.root_hash
        )
    except merkle.ProofError as exc:
        raise AuditUnavailable(
            f"seq {row.seq} is not in the signed tree ({exc}): run `facegate audit verify`"
        ) from None
    entry = json.loads(leaf)
    return PacketEntry(
        seq=row.seq, entry=entry, leaf_hash=proof.leaf_hash, inclusion_proof=proof.hashes
    )


async def _consistency_hint(
    audit: AuditLog,
    sessions: async_sessionmaker[AsyncSession],
    disclosure_seq: int,
    checkpoint: Checkpoint,
) -> ConsistencyHint | None:
    earlier = await _checkpoint_covering(sessions, disclosure_seq)
    if earlier is None or earlier.tree_size > checkpoint.size:
        return None
    proof = await LogReader(audit.sessions).consistency_proof(earlier.tree_size, checkpoint.size)
    return ConsistencyHint(
        disclosure_seq=disclosure_seq,
        tree_size=earlier.tree_size,
        root_hash=_b64(bytes(earlier.root_hash)),
        proof=proof.hashes,
    )


def _is_disclosure(row: AuditLogEntry, case_number: str) -> bool:
    detail = row.detail if isinstance(row.detail, dict) else {}
    return (
        row.event_type == EventType.AUDIT_READ.value
        and detail.get("action") == DISCLOSE_ACTION
        and detail.get("case_number") == case_number
    )


def _record_of(row: AuditLogEntry) -> AuditRecord:
    return AuditRecord.model_validate(
        {name: getattr(row, name) for name in AuditRecord.model_fields}
    )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _encode_cursor(time: datetime, seq: int) -> str:
    raw = f"{chain.format_time(time)}|{seq}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    invalid = MalformedRequest("the timeline cursor is not valid")
    if len(cursor) > 64:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        time_text, _, seq_text = raw.partition("|")
        decoded = (datetime.fromisoformat(time_text), int(seq_text))
    except ValueError:
        raise invalid from None
    if _encode_cursor(*decoded) != cursor:
        raise invalid
    return decoded
