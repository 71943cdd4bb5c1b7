"""Whole-log checks and export: the hash chain from seq 1 (``verify``), the tree against a
signed checkpoint (``verify_tree``), and the files an offline auditor checks (``export``).
They only read; a damaged log is reported, never repaired."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import chain
from gateway.audit.checkpoint import CheckpointError, Verifier
from gateway.audit.handover import KeyChain, is_handover
from gateway.audit.models import AuditLogEntry
from gateway.audit.reads import VERIFY_BATCH_SIZE, LogReader
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import StoredCheckpoint, TreeReport, VerifyProblem, VerifyReport
from gateway.audit.stores import map_database_errors
from gateway.audit.verifier import (
    CHECKPOINT_FILE,
    ENTRIES_FILE,
    HANDOVERS_DIR,
    LEAF_HASHES_FILE,
    TreeVerifier,
    bad_checkpoint,
    checked_against,
)
from gateway.errors import AuditUnavailable

Progress = Callable[[int], None]
"""Told how many more entries were done (a progress bar's ``advance``)."""


class LogChecker:
    """Checks of the whole log over ``sessions``, reading the tree through a ``LogReader``
    of the same database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._reader = LogReader(sessions)

    async def verify(
        self, *, batch_size: int = VERIFY_BATCH_SIZE, progress: Progress | None = None
    ) -> VerifyReport:
        """Re-check the whole chain from seq 1 and report the first bad entry.

        Reads ``batch_size`` entries at a time in seq order, so memory stays flat however
        long the log. Checks that seqs run 1, 2, 3... without a gap, that each prev_hash
        is the previous record_hash, and that each record_hash recomputes from the stored
        fields. Entries appended while it runs are checked too. Cutting entries off the
        end leaves a valid shorter chain: compare ``head_hash`` with a head noted before.
        ``progress`` hears how many entries were checked, a batch at a time.
        Raises AuditUnavailable if the database fails.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        expected_seq = 1
        prev_hash = chain.GENESIS_HASH
        last_seq: int | None = None  # no lower bound at first: a stray seq 0 is found too
        with map_database_errors():
            async with self._sessions() as session:
                while True:
                    batch = await _read_batch(session, after=last_seq, size=batch_size)
                    for row in batch:
                        found = _check_entry(row, expected_seq, prev_hash)
                        if found is not None:
                            problem, bad_seq, detail = found
                            return VerifyReport(
                                ok=False,
                                entries_checked=expected_seq - 1,
                                head_hash=_hex_or_none(expected_seq, prev_hash),
                                first_bad_seq=bad_seq,
                                problem=problem,
                                detail=detail,
                            )
                        assert isinstance(row, AuditLogEntry)  # _check_entry passed it
                        prev_hash = bytes.fromhex(row.record_hash)
                        expected_seq += 1
                        last_seq = row.seq
                    if progress is not None:
                        progress(len(batch))
                    # The entries checked are not needed again: keep the session small.
                    session.expunge_all()
                    if len(batch) < batch_size:
                        break
        return VerifyReport(
            ok=True,
            entries_checked=expected_seq - 1,
            head_hash=_hex_or_none(expected_seq, prev_hash),
        )

    async def verify_tree(
        self,
        verifier: Verifier,
        *,
        checkpoint: str | bytes | None = None,
        older: Sequence[str | bytes] = (),
        all_checkpoints: bool = False,
        progress: Progress | None = None,
    ) -> TreeReport:
        """Check the stored entries against ``checkpoint`` (default: the latest stored) and
        ``verifier``, with ``gateway.audit.verifier.TreeVerifier``. ``verifier`` may be any
        key of the log's chain: the stored key handovers (``gateway.audit.handover``) are
        followed from it, and each checkpoint is opened with the key in use at its size.
        ``older`` checkpoints, the handover heads, and with ``all_checkpoints`` every
        stored one, must be prefixes of the same tree. ``progress`` hears how many entries
        were read. Bad input gives a report that says what is wrong, never an exception."""
        if checkpoint is None:
            latest = await self._reader.latest_checkpoint()
            if latest is None:
                return TreeReport(
                    ok=False,
                    problem=VerifyProblem.BAD_CHECKPOINT,
                    detail="the log has signed no checkpoint yet: nothing to verify against",
                )
            checkpoint = latest.note
        try:
            chain = KeyChain.build(verifier, await self.handovers())
            target, olders = checked_against(chain, checkpoint, older)
            if all_checkpoints:
                olders.extend(
                    [
                        chain.open(c.note, f"stored checkpoint {c.tree_size}")
                        async for c in self._reader.checkpoints()
                        if c.tree_size <= target.size
                    ]
                )
        except CheckpointError as exc:
            return bad_checkpoint(exc)
        tree = TreeVerifier(
            target,
            older=olders,
            logged_leaf_hashes=await self._reader.logged_leaf_hashes(end=target.size + 1),
        )
        try:
            async for leaf in self._reader.leaves(end=target.size + 1):
                tree.add(leaf)
                if progress is not None:
                    progress(1)
        except (ValueError, TypeError) as exc:
            bad = _next_seq(tree)
            return TreeReport(
                ok=False,
                tree_size=target.size,
                entries_checked=bad - 1,
                first_bad_seq=bad,
                problem=VerifyProblem.ALTERED,
                detail=f"seq {bad} (or a row soon after) no longer makes a valid record:"
                f" {str(exc).splitlines()[0]}",
            )
        return tree.finish()

    async def handovers(self) -> list[str]:
        """The stored checkpoints that hand the log from one key to the next, in order
        (unverified: ``KeyChain.build`` checks them)."""
        return [note for note in await self._reader.handover_notes() if is_handover(note)]

    async def export(
        self, directory: Path, *, progress: Progress | None = None
    ) -> StoredCheckpoint:
        """Write the latest checkpoint and the entries it signs to ``directory`` (see
        ``gateway.audit.verifier`` for the files). Raises AuditUnavailable before the first
        checkpoint. Reads only: a damaged log is exported as found, up to a row that no
        longer makes a record (``verify_tree`` names it), so that an auditor gets the
        evidence."""
        latest = await self._reader.latest_checkpoint()
        if latest is None:
            raise AuditUnavailable("the log has signed no checkpoint yet: nothing to export")
        # Blocking file I/O on purpose: an export is a CLI job with a loop of its own.
        directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        with (
            (directory / ENTRIES_FILE).open("wb") as handle,
            contextlib.suppress(ValueError, TypeError),  # an unreadable row: stop there
        ):
            async for leaf in self._reader.leaves(end=latest.tree_size + 1):
                handle.write(leaf + b"\n")
                if progress is not None:
                    progress(1)
        handovers = [note for note in await self.handovers() if _size_of(note) <= latest.tree_size]
        if handovers:
            folder = directory / HANDOVERS_DIR
            folder.mkdir(exist_ok=True)
            for note in handovers:
                (folder / f"{_size_of(note):020d}").write_text(note)
        logged = await self._reader.logged_leaf_hashes(end=latest.tree_size + 1)
        (directory / LEAF_HASHES_FILE).write_bytes(logged)
        (directory / CHECKPOINT_FILE).write_text(latest.note)
        return latest


@dataclass(frozen=True, slots=True)
class _UnreadableRow:
    """A row whose stored values its column types cannot read back."""

    seq: object
    error: str


async def _read_batch(
    session: AsyncSession, *, after: int | None, size: int
) -> Sequence[AuditLogEntry | _UnreadableRow]:
    statement = select(AuditLogEntry).order_by(AuditLogEntry.seq).limit(size)
    if after is not None:
        statement = statement.where(AuditLogEntry.seq > after)
    try:
        return (await session.scalars(statement)).all()
    except (ValueError, TypeError):
        # SQLite keeps whatever was written behind the triggers (text in a time column,
        # broken JSON), and reading it back raises. Find the row, so verify can name it.
        session.expunge_all()
    seqs = (await session.scalars(statement.with_only_columns(AuditLogEntry.seq))).all()
    rows: list[AuditLogEntry | _UnreadableRow] = []
    for seq in seqs:
        try:
            one = select(AuditLogEntry).where(AuditLogEntry.seq == seq)
            rows.append((await session.scalars(one)).one())
        except (ValueError, TypeError) as exc:
            rows.append(_UnreadableRow(seq=seq, error=f"{type(exc).__name__}: {exc}"))
    return rows


def _check_entry(
    row: AuditLogEntry | _UnreadableRow, expected_seq: int, prev_hash: bytes
) -> tuple[VerifyProblem, int, str] | None:
    """What is wrong with ``row``, read where ``expected_seq`` should be, as (problem, the
    first bad seq, detail); None if nothing is."""
    after = "the start" if expected_seq == 1 else f"seq {expected_seq - 1}"
    if not isinstance(row.seq, int):  # SQLite stores any value in any column
        return VerifyProblem.MISSING, expected_seq, f"the entry after {after} has seq {row.seq!r}"
    if row.seq < expected_seq:
        # Only possible for the first row read (seqs are unique and ascending).
        return VerifyProblem.OUT_OF_ORDER, row.seq, f"seq {row.seq} comes before seq 1"
    if row.seq > expected_seq:
        gap = f"seq {expected_seq}"
        if row.seq > expected_seq + 1:
            gap = f"seqs {expected_seq}..{row.seq - 1}"
        return VerifyProblem.MISSING, expected_seq, f"{gap} missing: seq {row.seq} follows {after}"
    if isinstance(row, _UnreadableRow):
        return VerifyProblem.ALTERED, row.seq, f"seq {row.seq} cannot be read: {row.error}"
    if row.prev_hash != prev_hash.hex():
        before = "the genesis hash" if row.seq == 1 else f"the record_hash of seq {row.seq - 1}"
        return (
            VerifyProblem.OUT_OF_ORDER,
            row.seq,
            f"the prev_hash of seq {row.seq} is not {before}",
        )
    try:
        record = AuditRecord.model_validate(
            {name: getattr(row, name) for name in AuditRecord.model_fields}
        )
        recomputed = chain.entry_hash(row.seq, record, prev_hash)
    except (ValidationError, ValueError) as exc:
        first_line = str(exc).splitlines()[0]
        return VerifyProblem.ALTERED, row.seq, f"seq {row.seq} is not a valid record: {first_line}"
    if recomputed.hex() != row.record_hash:
        return (
            VerifyProblem.ALTERED,
            row.seq,
            f"the stored fields of seq {row.seq} do not match its hash",
        )
    return None


def _hex_or_none(next_seq: int, head: bytes) -> str | None:
    return None if next_seq == 1 else head.hex()


def _size_of(note: str) -> int:
    # A malformed one is exported anyway (as size 0), so that the auditor's check names it.
    try:
        return int(note.split("\n", 2)[1])
    except (IndexError, ValueError):
        return 0


def _next_seq(tree: TreeVerifier) -> int:
    return tree.entries_added + 1
