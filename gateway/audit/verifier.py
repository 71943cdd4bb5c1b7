"""The offline verifier: entries + a signed checkpoint + the log's public key, nothing else.

An export (``facegate audit export``) is a directory of three files:

``entries.jsonl``    line i is leaf i-1 of the tree, i.e. the exact RFC 8785 bytes of entry
                     seq=i (``chain.canonical_bytes``), then a newline. RFC 8785 output holds
                     no raw newline, so one line is one leaf.
``checkpoint``       the latest signed checkpoint, byte for byte as the log signed it.
``leaf-hashes.bin``  the leaf hashes the log stored when each entry was appended, 32 bytes
                     each. Optional, and trusted only once they hash to the signed root:
                     then they pin an altered entry down to its seq.
``handovers/``       one file per key handover (``gateway.audit.handover``), named by its
                     tree size: the checkpoint that hands the log from one key to the next.
                     Absent for a log whose key was never rotated.

What is checked, and what each failure is called:

* the checkpoint parses and carries a valid signature by the given key, or by a key the
  given one vouches for through an unbroken chain of handovers (BAD_CHECKPOINT); each
  handover head is then an older checkpoint the tree must extend;
* each line is a complete JSON object whose ``seq`` is its line number (TRUNCATED,
  MALFORMED, MISSING, OUT_OF_ORDER, INSERTED): ``seq`` is inside the signed leaf, so a
  line that moved, vanished or was slipped in shows up where it happened;
* the lines hash to the checkpoint's root (otherwise ALTERED at the first entry whose hash
  differs from the authenticated leaf hashes, or ROOT_MISMATCH when those are not
  available);
* every older checkpoint given, e.g. one an auditor saved last month, is the root of a
  prefix of these same entries (INCONSISTENT: the log was rewritten since).

Pure: no database. ``LogChecker.verify_tree`` (fsck.py) feeds the same ``TreeVerifier``
from a live database instead of a file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

from gateway.audit import merkle
from gateway.audit.checkpoint import Checkpoint, CheckpointError, Verifier
from gateway.audit.handover import KeyChain
from gateway.audit.schemas import TreeReport, VerifyProblem

ENTRIES_FILE: Final = "entries.jsonl"
CHECKPOINT_FILE: Final = "checkpoint"
LEAF_HASHES_FILE: Final = "leaf-hashes.bin"
HANDOVERS_DIR: Final = "handovers"


class TreeVerifier:
    """Feed leaves in order with ``add``, then ``finish``. Memory stays O(log n) plus the
    optional logged leaf hashes and one root per older checkpoint."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        older: Sequence[Checkpoint] = (),
        logged_leaf_hashes: bytes | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self._older = sorted(older, key=lambda c: c.size)
        self._older_sizes = {c.size for c in self._older}
        self._roots: dict[int, bytes] = {}
        self._logged = logged_leaf_hashes
        self._compact = merkle.CompactRange()
        self._count = 0
        # The first misplaced line: (its position, problem, detail), and the seq a line
        # showed up ahead of, to tell a reordering from a deletion at the end.
        self._misplaced: tuple[int, VerifyProblem, str] | None = None
        self._awaited: int | None = None
        self._awaited_found = False
        self._first_leaf_mismatch: int | None = None
        if 0 in self._older_sizes:
            self._roots[0] = merkle.EMPTY_ROOT

    @property
    def entries_added(self) -> int:
        return self._count

    def add(self, leaf: bytes, *, complete: bool = True) -> None:
        """The next leaf. ``complete=False`` for an export's last line without a newline."""
        self._count += 1
        position = self._count
        if not complete:
            self._misplace(
                position,
                VerifyProblem.TRUNCATED,
                f"line {position} ends without a newline: the export was cut short",
            )
        seq = _seq_of(leaf)
        if seq is None:
            self._misplace(
                position,
                VerifyProblem.MALFORMED,
                f"line {position} is not a complete JSON record with a seq",
            )
        elif seq != position:
            if self._awaited is not None and seq == self._awaited:
                self._awaited_found = True
            if seq > position:
                self._misplace(
                    position,
                    VerifyProblem.MISSING,
                    f"seq {position} is missing: line {position} holds seq {seq}",
                )
                if self._awaited is None:
                    self._awaited = position
            else:
                self._misplace(
                    position,
                    VerifyProblem.INSERTED,
                    f"line {position} holds seq {seq}, which came earlier: an inserted"
                    " or repeated entry",
                )
        value = merkle.leaf_hash(leaf)
        if (
            self._first_leaf_mismatch is None
            and self._logged is not None
            and self._logged[(position - 1) * 32 : position * 32] != value
        ):
            self._first_leaf_mismatch = position
        self._compact.append(value)
        if position in self._older_sizes or position == self.checkpoint.size:
            self._roots[position] = self._compact.root()

    def _misplace(self, position: int, problem: VerifyProblem, detail: str) -> None:
        if self._misplaced is None:
            self._misplaced = (position, problem, detail)

    def finish(self) -> TreeReport:
        size = self.checkpoint.size
        report = {
            "tree_size": size,
            "root_hash": base64.b64encode(self.checkpoint.root_hash).decode("ascii"),
        }
        problem = self._first_problem()
        if problem is not None:
            seq, kind, detail = problem
            return TreeReport(
                ok=False,
                entries_checked=max(0, (seq or 1) - 1),
                first_bad_seq=seq,
                problem=kind,
                detail=detail,
                **report,
            )
        return TreeReport(
            ok=True,
            entries_checked=size,
            older_checkpoints_checked=len(self._older),
            **report,
        )

    def _first_problem(self) -> tuple[int | None, VerifyProblem, str] | None:
        size = self.checkpoint.size
        misplaced = self._misplaced
        if misplaced is not None and misplaced[1] is VerifyProblem.MISSING and self._awaited_found:
            position = misplaced[0]
            misplaced = (
                position,
                VerifyProblem.OUT_OF_ORDER,
                f"line {position} holds a later entry; seq {position} appears further on:"
                " entries were reordered",
            )
        if self._count < size:
            shortfall = (
                self._count + 1,
                VerifyProblem.MISSING,
                f"the checkpoint signs {size} entries, only {self._count} are here:"
                f" seq {self._count + 1} onwards is missing",
            )
            if misplaced is None or misplaced[0] > shortfall[0]:
                misplaced = shortfall
        elif self._count > size and (misplaced is None or misplaced[0] > size + 1):
            misplaced = (
                size + 1,
                VerifyProblem.INSERTED,
                f"the checkpoint signs {size} entries, {self._count} are here:"
                f" seq {size + 1} onwards is not in the signed tree",
            )
        root_ok = self._roots.get(size, merkle.EMPTY_ROOT if size == 0 else None) == (
            self.checkpoint.root_hash
        )
        if root_ok and misplaced is None:
            return self._older_problem()
        altered = self._pinned_alteration() if not root_ok else None
        if altered is not None and (misplaced is None or altered < misplaced[0]):
            detail = f"seq {altered} is not the entry the checkpoint signed: it was altered"
            if misplaced is not None:
                detail += f" (and {misplaced[2]})"
            return altered, VerifyProblem.ALTERED, detail
        if misplaced is not None:
            return misplaced
        return None, VerifyProblem.ROOT_MISMATCH, self._root_mismatch_detail()

    def _pinned_alteration(self) -> int | None:
        """The first entry whose hash differs from the logged leaf hash, if the logged leaf
        hashes are authentic (they hash to the signed root)."""
        size = self.checkpoint.size
        if self._logged is None or len(self._logged) < size * 32:
            return None
        logged_root = merkle.root_of(self._logged[i * 32 : (i + 1) * 32] for i in range(size))
        if logged_root != self.checkpoint.root_hash:
            return None
        return self._first_leaf_mismatch

    def _root_mismatch_detail(self) -> str:
        good = [c.size for c in self._older if self._roots.get(c.size) == c.root_hash]
        where = f" after seq {max(good)}" if good else ""
        return (
            f"the entries do not hash to the root the checkpoint signs for {self.checkpoint.size}"
            f" entries: at least one entry{where} was altered (the leaf hashes that would name"
            " it are missing or altered too)"
        )

    def _older_problem(self) -> tuple[int | None, VerifyProblem, str] | None:
        for older in self._older:
            if older.size > self.checkpoint.size:
                return (
                    None,
                    VerifyProblem.INCONSISTENT,
                    f"the older checkpoint signs {older.size} entries, more than the newer"
                    f" one ({self.checkpoint.size}): the log was cut back",
                )
            if self._roots.get(older.size) != older.root_hash:
                return (
                    None,
                    VerifyProblem.INCONSISTENT,
                    f"the checkpoint of size {older.size} does not match the first"
                    f" {older.size} entries of this tree: the log was rewritten since it"
                    " was signed",
                )
        return None


def _seq_of(leaf: bytes) -> int | None:
    try:
        value = json.loads(leaf)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    seq = value.get("seq")
    return seq if type(seq) is int else None


def open_checkpoint(note: bytes | str, verifier: Verifier, what: str) -> Checkpoint:
    try:
        return Checkpoint.open(note, verifier)
    except CheckpointError as exc:
        raise CheckpointError(f"{what}: {exc}") from None


def bad_checkpoint(error: CheckpointError) -> TreeReport:
    return TreeReport(ok=False, problem=VerifyProblem.BAD_CHECKPOINT, detail=str(error))


def read_handovers(directory: Path) -> list[bytes]:
    """The handover notes of an export (none if it has no ``handovers/``)."""
    folder = directory / HANDOVERS_DIR
    if not folder.is_dir():
        return []
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]


def checked_against(
    chain: KeyChain, note: bytes | str, older: Sequence[bytes | str]
) -> tuple[Checkpoint, list[Checkpoint]]:
    """The target checkpoint and the older ones it must extend (those given, and every
    handover head up to its size), each opened with the key in use at its size."""
    target = chain.open(note, "checkpoint")
    olders = [chain.open(n, f"older checkpoint {i + 1}") for i, n in enumerate(older)]
    olders.extend(head for head in chain.heads if head.size <= target.size)
    return target, olders


def verify_export(
    directory: Path,
    verifier: Verifier,
    *,
    checkpoint: bytes | None = None,
    older: Sequence[bytes] = (),
    progress: Callable[[int], None] | None = None,
) -> TreeReport:
    """Verify the export in ``directory`` against its checkpoint (or ``checkpoint``, one the
    auditor holds) and ``verifier`` (any key of the log's chain: an auditor who pinned the
    first key follows the handovers); ``older`` are earlier checkpoints to check against.
    ``progress`` is called with the number of entries read, a batch at a time.

    Never raises for bad input: a missing file, a malformed checkpoint or a bad line is a
    report with ``ok=False`` that says what is wrong.
    """
    entries_path = directory / ENTRIES_FILE
    try:
        note = checkpoint if checkpoint is not None else (directory / CHECKPOINT_FILE).read_bytes()
        handovers = read_handovers(directory)
    except OSError as exc:
        return bad_checkpoint(CheckpointError(f"cannot read the checkpoint: {exc.strerror}"))
    try:
        chain = KeyChain.build(verifier, handovers)
        target, olders = checked_against(chain, note, older)
    except CheckpointError as exc:
        return bad_checkpoint(exc)
    logged_path = directory / LEAF_HASHES_FILE
    logged = logged_path.read_bytes() if logged_path.is_file() else None
    tree = TreeVerifier(target, older=olders, logged_leaf_hashes=logged)
    try:
        with entries_path.open("rb") as handle:
            feed_lines(tree, handle, progress=progress)
    except OSError as exc:
        return TreeReport(
            ok=False,
            problem=VerifyProblem.MISSING,
            detail=f"cannot read {entries_path}: {exc.strerror}",
        )
    return tree.finish()


def feed_lines(
    tree: TreeVerifier,
    lines: Iterable[bytes],
    *,
    progress: Callable[[int], None] | None = None,
    every: int = 1000,
) -> None:
    """Feed an ``entries.jsonl`` stream, line by line, into ``tree``; ``progress`` hears
    how many lines were fed, ``every`` lines at a time and once at the end."""
    fed = 0
    for line in lines:
        complete = line.endswith(b"\n")
        tree.add(line[:-1] if complete else line, complete=complete)
        fed += 1
        if progress is not None and fed == every:
            progress(fed)
            fed = 0
    if progress is not None and fed:
        progress(fed)
