"""Reads for auditors: the tree's size, checkpoints, inclusion and consistency proofs,
entries as leaf bytes. None takes the sequencer: every row they read was committed with
the nodes and checkpoint that cover it. A database failure is raised as AuditUnavailable
(``stores.map_database_errors``); a size or range outside the log as MalformedRequest."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import chain, merkle
from gateway.audit.handover import FROM_PREFIX
from gateway.audit.models import AuditCheckpoint, AuditLogEntry, AuditTreeNode
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import (
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    LogEntryPage,
    StoredCheckpoint,
)
from gateway.audit.stores import map_database_errors, read_nodes
from gateway.errors import AuditUnavailable, MalformedRequest

MAX_PAGE_SIZE: Final = 1000
HANDOVER_MARKER: Final = "\n" + FROM_PREFIX
VERIFY_BATCH_SIZE: Final = 1000


class LogReader:
    """Reads of the committed tree over ``sessions`` (any engine facegate supports)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def tree_size(self) -> int:
        """The number of entries committed (the size of the current tree)."""
        with map_database_errors():
            async with self._sessions() as session:
                size = await session.scalar(
                    select(AuditLogEntry.seq).order_by(AuditLogEntry.seq.desc()).limit(1)
                )
        return int(size or 0)

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint of the largest tree signed so far, None before the first."""
        statement = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
        with map_database_errors():
            async with self._sessions() as session:
                row = (await session.scalars(statement)).one_or_none()
        return None if row is None else _stored_checkpoint(row)

    async def checkpoints(self) -> AsyncIterator[StoredCheckpoint]:
        """Every checkpoint ever signed, smallest tree first."""
        last = -1
        with map_database_errors():
            async with self._sessions() as session:
                while True:
                    rows = (
                        await session.scalars(
                            select(AuditCheckpoint)
                            .where(AuditCheckpoint.tree_size > last)
                            .order_by(AuditCheckpoint.tree_size)
                            .limit(VERIFY_BATCH_SIZE)
                        )
                    ).all()
                    for row in rows:
                        yield _stored_checkpoint(row)
                        last = row.tree_size
                    session.expunge_all()
                    if len(rows) < VERIFY_BATCH_SIZE:
                        return

    async def handover_notes(self) -> list[str]:
        """The notes of the checkpoints that carry a key handover line, smallest tree first
        (unverified). Filtered by the database: a log signs one checkpoint per batch and
        hands over rarely."""
        statement = (
            select(AuditCheckpoint.note)
            .where(AuditCheckpoint.note.contains(HANDOVER_MARKER, autoescape=True))
            .order_by(AuditCheckpoint.tree_size)
        )
        with map_database_errors():
            async with self._sessions() as session:
                return list(await session.scalars(statement))

    async def inclusion_proof(self, seq: int, tree_size: int) -> InclusionProof:
        """The RFC 9162 inclusion proof of entry ``seq`` (leaf ``seq - 1``) in the tree of
        ``tree_size`` entries. MalformedRequest if either is outside the log."""
        current = await self.tree_size()
        _check_size(tree_size, current, "tree_size")
        if not 1 <= seq <= tree_size:
            raise MalformedRequest(
                f"seq {seq} is not in a tree of size {tree_size} (seqs 1..{tree_size})"
            )
        ranges = merkle.inclusion_ranges(seq - 1, tree_size)
        nodes = await self._nodes(merkle.proof_node_ids([*ranges, (seq - 1, seq)]))
        return InclusionProof(
            seq=seq,
            leaf_index=seq - 1,
            tree_size=tree_size,
            leaf_hash=_b64(nodes[(0, seq - 1)]),
            hashes=[_b64(h) for h in merkle.hashes_for(ranges, nodes.__getitem__)],
        )

    async def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """The RFC 9162 consistency proof from the tree of ``first`` entries to the tree of
        ``second``. MalformedRequest if the sizes are reversed or beyond the log."""
        current = await self.tree_size()
        _check_size(second, current, "second")
        if not 0 <= first <= second:
            raise MalformedRequest(f"first ({first}) must be between 0 and second ({second})")
        ranges = merkle.consistency_ranges(first, second)
        nodes = await self._nodes(merkle.proof_node_ids(ranges))
        return ConsistencyProof(
            first=first,
            second=second,
            hashes=[_b64(h) for h in merkle.hashes_for(ranges, nodes.__getitem__)],
        )

    async def entries(self, start: int, end: int) -> LogEntryPage:
        """Entries ``start`` <= seq < ``end`` as their leaf bytes (at most MAX_PAGE_SIZE)."""
        current = await self.tree_size()
        if not 1 <= start < end:
            raise MalformedRequest(f"need 1 <= start < end, got start={start} end={end}")
        if end - start > MAX_PAGE_SIZE:
            raise MalformedRequest(f"at most {MAX_PAGE_SIZE} entries per request")
        if end - 1 > current:
            raise MalformedRequest(f"end {end} is beyond the log ({current} entries)")
        leaves = [leaf async for leaf in self.leaves(start=start, end=end)]
        return LogEntryPage(
            entries=[LogEntry(seq=start + i, leaf=leaf.decode()) for i, leaf in enumerate(leaves)]
        )

    async def leaves(
        self, *, start: int = 1, end: int | None = None, batch_size: int = VERIFY_BATCH_SIZE
    ) -> AsyncIterator[bytes]:
        """The leaf bytes (``chain.canonical_bytes``) of entries start <= seq < end, in seq
        order, recomputed from the stored fields. Stops at a gap; raises ValueError for a
        row that no longer makes a valid record (verify names such rows)."""
        last = start - 1
        with map_database_errors():
            async with self._sessions() as session:
                while end is None or last + 1 < end:
                    size = batch_size if end is None else min(batch_size, end - 1 - last)
                    rows = (
                        await session.scalars(
                            select(AuditLogEntry)
                            .where(AuditLogEntry.seq > last)
                            .order_by(AuditLogEntry.seq)
                            .limit(size)
                        )
                    ).all()
                    for row in rows:
                        if row.seq != last + 1:
                            return
                        yield chain.canonical_bytes(row.seq, _record_of(row))
                        last = row.seq
                    session.expunge_all()
                    if len(rows) < size:
                        return

    async def logged_leaf_hashes(self, *, end: int, batch_size: int = 10_000) -> bytes:
        """The leaf hashes stored when entries 1..end-1 were appended, concatenated."""
        chunks: list[bytes] = []
        last = -1
        with map_database_errors():
            async with self._sessions() as session:
                while last + 1 < end - 1:
                    rows = (
                        await session.execute(
                            select(AuditTreeNode.idx, AuditTreeNode.hash)
                            .where(AuditTreeNode.level == 0, AuditTreeNode.idx > last)
                            .where(AuditTreeNode.idx < end - 1)
                            .order_by(AuditTreeNode.idx)
                            .limit(batch_size)
                        )
                    ).all()
                    if not rows:
                        break
                    chunks.extend(row.hash for row in rows)
                    last = rows[-1].idx
        return b"".join(chunks)

    async def _nodes(self, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        with map_database_errors():
            async with self._sessions() as session:
                nodes = await read_nodes(session, ids)
        if len(nodes) != len(ids):
            raise AuditUnavailable("the audit tree is missing nodes: run `facegate audit verify`")
        return nodes


def _check_size(size: int, current: int, name: str) -> None:
    if not 1 <= size <= current:
        raise MalformedRequest(
            f"{name} {size} is outside the log: it holds {current} entries"
            if size > current
            else f"{name} must be at least 1"
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _stored_checkpoint(row: AuditCheckpoint) -> StoredCheckpoint:
    return StoredCheckpoint(
        tree_size=row.tree_size,
        root_hash=_b64(bytes(row.root_hash)),
        note=row.note,
        created_at=row.created_at,
    )


def _record_of(row: AuditLogEntry) -> AuditRecord:
    return AuditRecord.model_validate(
        {name: getattr(row, name) for name in AuditRecord.model_fields}
    )
