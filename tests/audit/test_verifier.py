"""The offline verifier on synthetic exports: every kind of damage is named, never verified."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import chain, merkle
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.schemas import TreeReport, VerifyProblem
from gateway.audit.verifier import (
    CHECKPOINT_FILE,
    ENTRIES_FILE,
    LEAF_HASHES_FILE,
    TreeVerifier,
    feed_lines,
    verify_export,
)
from tests.audit.conftest import make_record

ORIGIN = "test.example/facegate"
SIGNER = Signer.generate(ORIGIN)


def leaves(count: int) -> list[bytes]:
    return [
        chain.canonical_bytes(seq, make_record(request_id=f"req-{seq}"))
        for seq in range(1, count + 1)
    ]


def sign(lines: list[bytes], signer: Signer = SIGNER) -> str:
    root = merkle.root_of(merkle.leaf_hash(line) for line in lines)
    return Checkpoint(signer.name, len(lines), root).sign(signer)


def export(directory: Path, lines: list[bytes], *, with_hashes: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ENTRIES_FILE).write_bytes(b"".join(line + b"\n" for line in lines))
    (directory / CHECKPOINT_FILE).write_text(sign(lines))
    if with_hashes:
        (directory / LEAF_HASHES_FILE).write_bytes(b"".join(merkle.leaf_hash(x) for x in lines))
    return directory


def rewrite_entries(directory: Path, lines: list[bytes], tail: bytes = b"\n") -> None:
    (directory / ENTRIES_FILE).write_bytes(b"\n".join(lines) + tail)


def check(directory: Path, **kwargs: object) -> TreeReport:
    return verify_export(directory, SIGNER.verifier, **kwargs)  # type: ignore[arg-type]


def test_a_faithful_export_verifies(tmp_path: Path) -> None:
    report = check(export(tmp_path, leaves(20)))
    assert report.ok and report.tree_size == 20 and report.entries_checked == 20


def test_an_altered_entry_is_named(tmp_path: Path) -> None:
    original = leaves(20)
    directory = export(tmp_path, original)
    altered = list(original)
    altered[6] = altered[6].replace(b'"allow"', b'"deny"')
    rewrite_entries(directory, altered)
    report = check(directory)
    assert not report.ok
    assert (report.first_bad_seq, report.problem) == (7, VerifyProblem.ALTERED)


def test_without_authentic_leaf_hashes_an_alteration_is_found_not_pinned(tmp_path: Path) -> None:
    original = leaves(20)
    directory = export(tmp_path, original, with_hashes=False)
    altered = list(original)
    altered[6] = altered[6].replace(b'"allow"', b'"deny"')
    rewrite_entries(directory, altered)
    report = check(directory)
    assert not report.ok and report.problem is VerifyProblem.ROOT_MISMATCH
    assert report.first_bad_seq is None


def test_a_missing_entry_is_named(tmp_path: Path) -> None:
    original = leaves(20)
    directory = export(tmp_path, original)
    rewrite_entries(directory, original[:4] + original[5:])
    report = check(directory)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 5, VerifyProblem.MISSING)


def test_reordered_entries_are_named(tmp_path: Path) -> None:
    original = leaves(20)
    directory = export(tmp_path, original)
    swapped = list(original)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    rewrite_entries(directory, swapped)
    report = check(directory)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert report.problem is VerifyProblem.OUT_OF_ORDER


def test_an_inserted_entry_is_named(tmp_path: Path) -> None:
    original = leaves(20)
    directory = export(tmp_path, original)
    forged = chain.canonical_bytes(5, make_record(request_id="forged"))
    rewrite_entries(directory, [*original[:4], forged, *original[4:]])
    report = check(directory)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "inserted" in (report.detail or "")


def test_a_truncated_export_is_named(tmp_path: Path) -> None:
    original = leaves(20)
    directory = export(tmp_path, original)
    data = (directory / ENTRIES_FILE).read_bytes()
    (directory / ENTRIES_FILE).write_bytes(data[:-40])
    report = check(directory)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 20, VerifyProblem.TRUNCATED)
    rewrite_entries(directory, original[:12])
    report = check(directory)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 13, VerifyProblem.MISSING)


def test_bad_checkpoints_are_refused_with_a_reason(tmp_path: Path) -> None:
    directory = export(tmp_path, leaves(5))
    other = Signer.generate(ORIGIN)
    for note, reason in (
        (b"not a note", "not a signed note"),
        (sign(leaves(5), other).encode(), "not signed by the key"),
        (sign(leaves(5)).replace("\n5\n", "\n6\n").encode(), "does not verify"),
    ):
        report = check(directory, checkpoint=note)
        assert not report.ok and report.problem is VerifyProblem.BAD_CHECKPOINT
        assert reason in (report.detail or "")
    (directory / CHECKPOINT_FILE).unlink()
    report = check(directory)
    assert not report.ok and "cannot read the checkpoint" in (report.detail or "")


def test_older_checkpoints_must_be_prefixes(tmp_path: Path) -> None:
    original = leaves(30)
    directory = export(tmp_path, original)
    saved = [sign(original[:n]).encode() for n in (1, 7, 16, 30)]
    report = check(directory, older=saved)
    assert report.ok and report.older_checkpoints_checked == 4

    # The operator rewrote history (entry 3) after an auditor saved the checkpoint of 7,
    # and re-signed everything: each export is self-consistent, the saved one is not.
    rewritten = list(original)
    rewritten[2] = chain.canonical_bytes(3, make_record(request_id="rewritten"))
    export(tmp_path / "rewritten", rewritten)
    report = check(tmp_path / "rewritten", older=[saved[1]])
    assert not report.ok and report.problem is VerifyProblem.INCONSISTENT
    assert "size 7" in (report.detail or "")

    # A newer log cut back below an older checkpoint.
    report = check(export(tmp_path / "cut", original[:10]), older=[saved[2]])
    assert not report.ok and report.problem is VerifyProblem.INCONSISTENT


FIXED = leaves(12)
FIXED_NOTE = sign(FIXED)
FIXED_HASHES = b"".join(merkle.leaf_hash(line) for line in FIXED)
FIXED_FILE = b"".join(line + b"\n" for line in FIXED)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, len(FIXED_FILE) - 1), xor=st.integers(1, 255))
def test_any_changed_byte_fails(position: int, xor: int) -> None:
    data = bytearray(FIXED_FILE)
    data[position] ^= xor
    tree = TreeVerifier(
        Checkpoint.open(FIXED_NOTE, SIGNER.verifier), logged_leaf_hashes=FIXED_HASHES
    )
    feed_lines(tree, io.BytesIO(bytes(data)))
    report = tree.finish()
    assert not report.ok
    assert report.first_bad_seq is not None
    line_of_byte = FIXED_FILE[:position].count(b"\n") + 1
    assert report.first_bad_seq <= line_of_byte + 1


@pytest.mark.parametrize("count", [0, 1, 2, 3, 64, 65])
def test_sizes_at_the_edges(tmp_path: Path, count: int) -> None:
    assert check(export(tmp_path, leaves(count))).ok


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_dropped_or_reordered_line_is_named(data: st.DataObject) -> None:
    lines = list(FIXED)
    position = data.draw(st.integers(0, len(lines) - 2), label="position")
    if data.draw(st.booleans(), label="drop"):
        del lines[position]
    else:
        lines[position], lines[position + 1] = lines[position + 1], lines[position]
    tree = TreeVerifier(
        Checkpoint.open(FIXED_NOTE, SIGNER.verifier), logged_leaf_hashes=FIXED_HASHES
    )
    feed_lines(tree, io.BytesIO(b"".join(line + b"\n" for line in lines)))
    report = tree.finish()
    assert not report.ok
    assert report.first_bad_seq == position + 1
