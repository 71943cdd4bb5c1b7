"""Rotating the log's signing key: the handover checkpoint, the chain of keys an auditor
follows from the key they pinned, and what breaks it (a forged handover, a tree after the
handover that does not extend it, a checkpoint the old key signed after handing over)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.admin import Actor
from gateway.audit.checkpoint import Checkpoint, CheckpointError, SignedTreeState, Signer
from gateway.audit.fsck import LogChecker
from gateway.audit.handover import HandoverSigner, KeyChain, parse_handover
from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.audit.schemas import VerifyProblem
from gateway.audit.verifier import HANDOVERS_DIR, verify_export
from gateway.db import session_factory
from gateway.errors import AuditUnavailable
from gateway.rotation import rotate_log_key

ORIGIN = "test.example/log"


def log_with(engine: AsyncEngine, key_file: Path) -> AuditLog:
    return AuditLog(
        session_factory(engine),
        signer=Signer.load_or_create(key_file, ORIGIN),
        signed_state=SignedTreeState.beside(key_file),
    )


async def append(log: AuditLog, make: Callable[..., AuditRecord], count: int) -> None:
    for index in range(count):
        await log.append(make(request_id=f"req-{index}"))
    await log.aclose()


async def rotated_log(
    engine: AsyncEngine, tmp_path: Path, make: Callable[..., AuditRecord]
) -> tuple[Signer, Signer, int]:
    """A log of 5 entries under the first key, the rotation, then 4 under the second."""
    key_file = tmp_path / "log.key"
    await append(log_with(engine, key_file), make, 5)
    old = Signer.parse(key_file.read_text())
    rotated = await rotate_log_key(
        sessions=session_factory(engine), key_file=key_file, actor=Actor.cli()
    )
    new = Signer.parse(key_file.read_text())
    assert rotated.old_key == old.verifier and rotated.new_key == new.verifier
    assert rotated.seq == 6 and rotated.tree_size == 6
    await append(log_with(engine, key_file), make, 4)
    return old, new, rotated.tree_size


async def test_the_old_key_pinned_auditor_verifies_across_the_rotation(
    engine: AsyncEngine, tmp_path: Path, record_factory: Callable[..., AuditRecord]
) -> None:
    old, new, handover_size = await rotated_log(engine, tmp_path, record_factory)
    log = LogChecker(session_factory(engine))
    for pinned in (old.verifier, new.verifier):  # forward from the old, backward from the new
        report = await log.verify_tree(pinned, all_checkpoints=True)
        assert report.ok, report
        assert report.tree_size == 10
    (note,) = await log.handovers()
    handover = parse_handover(note)
    assert handover is not None
    assert (handover.old, handover.new) == (old.verifier, new.verifier)
    assert handover.checkpoint.size == handover_size
    # Offline, from an export, with the old key only.
    export = tmp_path / "export"
    await log.export(export)
    assert verify_export(export, old.verifier).ok
    # Without the handover, the old key cannot vouch for the new key's checkpoint.
    for path in (export / HANDOVERS_DIR).iterdir():
        path.unlink()
    report = verify_export(export, old.verifier)
    assert not report.ok and report.problem is VerifyProblem.BAD_CHECKPOINT


async def test_a_forged_handover_fails(
    engine: AsyncEngine, tmp_path: Path, record_factory: Callable[..., AuditRecord]
) -> None:
    old, _new, size = await rotated_log(engine, tmp_path, record_factory)
    log = LogChecker(session_factory(engine))
    export = tmp_path / "export"
    await log.export(export)
    (handover_file,) = (export / HANDOVERS_DIR).iterdir()
    real = parse_handover(handover_file.read_text())
    assert real is not None
    head = Checkpoint(ORIGIN, size, real.checkpoint.root_hash).body()
    mallory, accomplice = Signer.generate(ORIGIN), Signer.generate(ORIGIN)

    # The same tree head handed between two keys of the forger's, both signing it: the
    # chain no longer starts from the key the auditor pinned.
    handover_file.write_text(HandoverSigner(mallory, accomplice).sign_note(head))
    report = verify_export(export, old.verifier)
    assert not report.ok and report.problem is VerifyProblem.BAD_CHECKPOINT
    assert "not one of this log's keys" in (report.detail or ""), report

    # The real key named as the outgoing one, the forger's as its successor, signed by the
    # forger alone (the real key's signature cannot be made).
    claim = head + f"key-handover-from {old.verifier}\nkey-handover-to {mallory.verifier}\n"
    handover_file.write_text(mallory.sign_note(claim))
    report = verify_export(export, old.verifier)
    assert not report.ok and report.problem is VerifyProblem.BAD_CHECKPOINT
    assert "not signed by its outgoing key" in (report.detail or ""), report


async def test_a_tree_after_the_handover_that_does_not_extend_it_fails(
    engine: AsyncEngine, tmp_path: Path, record_factory: Callable[..., AuditRecord]
) -> None:
    old, new, _size = await rotated_log(engine, tmp_path, record_factory)
    log = LogChecker(session_factory(engine))
    export = tmp_path / "export"
    await log.export(export)
    # The new key signs a different tree of 10 entries (entry 2 rewritten): consistent
    # with nothing the old key signed.
    lines = (export / "entries.jsonl").read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"req-1", b"req-X")
    (export / "entries.jsonl").write_bytes(b"\n".join(lines))
    from gateway.audit import merkle

    root = merkle.root_of(merkle.leaf_hash(line) for line in lines[:10])
    (export / "checkpoint").write_text(Checkpoint(ORIGIN, 10, root).sign(new))
    (export / "leaf-hashes.bin").unlink()
    report = verify_export(export, old.verifier)
    assert not report.ok and report.problem is VerifyProblem.INCONSISTENT, report


async def test_the_old_key_signs_nothing_after_the_handover(
    engine: AsyncEngine, tmp_path: Path, record_factory: Callable[..., AuditRecord]
) -> None:
    key_file = tmp_path / "log.key"
    stale = log_with(engine, key_file)  # a replica that has not restarted
    await stale.append(record_factory())
    await rotate_log_key(sessions=session_factory(engine), key_file=key_file, actor=Actor.cli())
    with pytest.raises(AuditUnavailable, match="handed over"):
        await stale.append(record_factory(request_id="late"))
    await stale.aclose()
    # Had it signed anyway (a key that escaped), the checkpoint is refused by the chain.
    old = stale.signer
    assert old is not None
    async with engine.begin() as db:
        size = await db.scalar(text("SELECT max(tree_size) FROM audit_checkpoint"))
        note = (
            await db.execute(
                text("SELECT note FROM audit_checkpoint WHERE tree_size = :s"), {"s": size}
            )
        ).scalar_one()
    handover = parse_handover(note)
    assert handover is not None
    chain = KeyChain.build(old.verifier, [note])
    late = Checkpoint(ORIGIN, size + 1, handover.checkpoint.root_hash).sign(old)
    with pytest.raises(CheckpointError):
        chain.open(late, "a late checkpoint")


async def test_an_interrupted_rotation_is_finished_by_running_it_again(
    engine: AsyncEngine,
    tmp_path: Path,
    record_factory: Callable[..., AuditRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_file = tmp_path / "log.key"
    await append(log_with(engine, key_file), record_factory, 3)
    old = Signer.parse(key_file.read_text())

    def crash(*args: object) -> None:
        raise OSError("the host went down before the new key was put in place")

    # The handover commits, then the rename of the new key over the old one fails.
    monkeypatch.setattr("gateway.rotation._put_in_place", crash)
    with pytest.raises(OSError):
        await rotate_log_key(sessions=session_factory(engine), key_file=key_file, actor=Actor.cli())
    monkeypatch.undo()
    assert Signer.parse(key_file.read_text()).verifier == old.verifier
    rotated = await rotate_log_key(
        sessions=session_factory(engine), key_file=key_file, actor=Actor.cli()
    )
    assert rotated.seq is None  # nothing appended twice: the handover was already there
    new = Signer.parse(key_file.read_text())
    assert rotated.new_key == new.verifier != old.verifier
    assert not (tmp_path / "log.key.next").exists()
    await append(log_with(engine, key_file), record_factory, 2)
    log = LogChecker(session_factory(engine))
    assert len(await log.handovers()) == 1
    report = await log.verify_tree(old.verifier, all_checkpoints=True)
    assert report.ok and report.tree_size == 6, report


async def test_export_and_verify_report_their_progress(
    engine: AsyncEngine, tmp_path: Path, record_factory: Callable[..., AuditRecord]
) -> None:
    key_file = tmp_path / "log.key"
    await append(log_with(engine, key_file), record_factory, 7)
    log = LogChecker(session_factory(engine))
    done: list[int] = []
    await log.export(tmp_path / "export", progress=done.append)
    assert sum(done) == 7
    done.clear()
    await log.verify(progress=done.append)
    assert sum(done) == 7
    done.clear()
    verifier = Signer.parse(key_file.read_text()).verifier
    assert (await log.verify_tree(verifier, progress=done.append)).ok
    assert sum(done) == 7
    done.clear()
    assert verify_export(tmp_path / "export", verifier, progress=done.append).ok
    assert sum(done) == 7
