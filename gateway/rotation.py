"""Key rotation, as admin actions: the audit log's signing key and the master key that
derives session secrets. The CLI (`facegate audit rotate-key`, `facegate keys
rotate-master`) is a thin caller; both are recorded in the log as admin actions built by
``admin.action_record``.

Ordering, for both: the log may say more was done than was, never less. The record of a
rotation commits before the new key is put in place; a crash in between leaves a record
of a rotation that did not happen, which running the command again completes (the log
key) or repeats (the master key).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.admin import Actor, Recorder, action_record
from gateway.audit.checkpoint import CheckpointError, SignedTreeState, Signer, Verifier
from gateway.audit.handover import HandoverSigner, handover_in, note_text
from gateway.audit.log import AuditLog
from gateway.audit.reads import LogReader
from gateway.audit.records import EventType
from gateway.auth.models import CaseSessionRow
from gateway.auth.secrets import new_master_key, read_ring, write_ring


@dataclass(frozen=True)
class LogKeyRotated:
    old_key: Verifier
    new_key: Verifier
    tree_size: int  # the handover checkpoint's: the old key's last tree, the new key's first
    seq: int | None  # the rotation's record (None when an interrupted rotation was finished)


def next_key_file(key_file: Path) -> Path:
    """Where the incoming key waits until its handover is committed."""
    return key_file.with_name(key_file.name + ".next")


async def rotate_log_key(
    *, sessions: async_sessionmaker[AsyncSession], key_file: Path, actor: Actor
) -> LogKeyRotated:
    """Hand the log from the key in ``key_file`` to a new key, continuing the same tree.

    1. The new key is written beside the old one (``<key file>.next``, 0600, O_EXCL), or
       the one left there by an interrupted rotation is reused.
    2. The rotation's record (`log_key.rotate`, naming both public keys) is appended by
       the old key's last batch, whose checkpoint is the handover: its body names both
       keys and both keys sign it (``gateway.audit.handover``). The writer's checks hold
       as for any batch (the stored tree extends the latest checkpoint and the signed
       tree state beside the key), so a rewritten log is not handed over.
    3. Only then does the new key replace the old in ``key_file`` (an atomic rename; the
       old private key is gone). The signed tree state beside it already records the
       handover head, so the new key only signs trees that extend it.

    Raises CheckpointError for an unreadable key, AuditUnavailable as any append does.
    A process still holding the old key refuses to sign after the handover
    (``AuditLog``), so restart every gateway process once this returns.
    """
    # Blocking file I/O on purpose: a CLI job with a loop of its own, a few small files.
    try:
        old = Signer.parse(key_file.read_text())  # noqa: ASYNC240
    except OSError as exc:
        raise CheckpointError(f"{key_file}: {exc.strerror}") from None
    staged = next_key_file(key_file)
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        new = Signer.parse(staged.read_text())  # an interrupted rotation's key
    else:
        new = Signer.generate(old.name)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(new) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    log = AuditLog(
        sessions,
        signer=HandoverSigner(old, new),
        signed_state=SignedTreeState.beside(key_file),
    )
    try:
        latest = await LogReader(sessions).latest_checkpoint()
        done = latest is not None and _hands_over(latest.note, old.verifier, new.verifier)
        seq = None
        if done:
            assert latest is not None
            tree_size = latest.tree_size
        else:
            record = action_record(
                EventType.ADMIN_ACTION,
                actor=actor,
                action="log_key.rotate",
                detail={"old_key": str(old.verifier), "new_key": str(new.verifier)},
            )
            entry = await log.append(record)
            seq = entry.seq
            handover = await LogReader(sessions).latest_checkpoint()
            assert handover is not None  # the batch that held the record signed one
            tree_size = handover.tree_size
    finally:
        await log.aclose()
    _put_in_place(staged, key_file)
    return LogKeyRotated(old_key=old.verifier, new_key=new.verifier, tree_size=tree_size, seq=seq)


def _hands_over(note: str, old: Verifier, new: Verifier) -> bool:
    try:
        found = handover_in(note_text(note))
    except CheckpointError:
        return False
    return found is not None and found[1] == old and found[2] == new


def _put_in_place(staged: Path, key_file: Path) -> None:
    """The new key over the old, atomically; durable once the directory is synced."""
    os.replace(staged, key_file)
    _fsync_directory(key_file.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class MasterKeyRotated:
    """A rotation recorded in the caller's transaction; ``apply`` writes the key file and
    must be called only once that transaction has committed."""

    version: int  # the new current version
    retired: list[int]  # versions removed: no live session used them
    kept: list[int]  # older versions kept for the live sessions opened under them
    _apply: Callable[[], None] = field(repr=False)

    def apply(self) -> None:
        self._apply()


async def rotate_master_key(
    *, db: AsyncSession, key_file: Path, now: datetime, record: Recorder, add: bool = True
) -> MasterKeyRotated:
    """Add a new current master key (``add``) and retire every older version no live
    session uses (recorded as `master_key.rotate`, or `master_key.retire` without
    ``add``: versions only, never key material). New sessions derive under the new key
    from the moment the file is written; a live session keeps its version until it
    expires or is revoked, and a later rotation (or `facegate keys retire-master`)
    retires it then. Raises ValueError for an unreadable key file."""
    keys = read_ring(key_file)
    in_use = set(
        await db.scalars(
            select(CaseSessionRow.key_version)
            .where(CaseSessionRow.revoked_at.is_(None), CaseSessionRow.expires_at > now)
            .distinct()
        )
    )
    current = max(keys)
    version = current + 1 if add else current
    if add:
        keys[version] = new_master_key()
    # The key being replaced is kept once, whether used or not: a gateway that has not yet
    # re-read the file may be opening a session under it right now.
    keep = {version, current} if add else {version}
    retired = sorted(v for v in keys if v not in keep and v not in in_use)
    kept = sorted(v for v in keys if v != version and v not in retired)
    await record(
        "master_key.rotate" if add else "master_key.retire",
        version=version,
        retired_versions=retired,
        kept_versions=kept,
    )
    remaining = {v: key for v, key in keys.items() if v not in retired}
    return MasterKeyRotated(
        version=version,
        retired=retired,
        kept=kept,
        _apply=lambda: write_ring(key_file, remaining),
    )
