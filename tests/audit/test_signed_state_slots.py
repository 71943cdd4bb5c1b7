"""The record of the last signed tree on disk: two checksummed slots, written in place into
the one that does not hold the recorded tree, so that a crash mid-write leaves the old or
the new record and every record costs one data write and one fdatasync
(``SignedTreeState``). A file of a plain checkpoint body, as earlier versions and operators
write it, is read as such and turned into slots by the first record."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import checkpoint as checkpoint_module
from gateway.audit.checkpoint import Checkpoint, CheckpointError, SignedTreeState
from tests.audit.test_tree_log import ORIGIN

SLOT = SignedTreeState.SLOT_SIZE


def tree(size: int, fill: int = 0) -> Checkpoint:
    return Checkpoint(ORIGIN, size, bytes([fill]) * 32)


def slot_of(checkpoint: Checkpoint) -> bytes:
    """A slot as the docstring describes it, built here rather than by the code under test."""
    body = checkpoint.body().encode()
    header = b"facegate-signed-tree sha256:" + hashlib.sha256(body).hexdigest().encode() + b"\n"
    return header + body + b" " * (SLOT - len(header) - len(body) - 1) + b"\n"


def slots(path: Path) -> tuple[bytes, bytes]:
    data = path.read_bytes()
    assert len(data) == 2 * SLOT
    return data[:SLOT], data[SLOT:]


@pytest.fixture
def state(tmp_path: Path) -> SignedTreeState:
    return SignedTreeState.beside(tmp_path / "log.key")


def test_records_alternate_between_the_slots_in_place(state: SignedTreeState) -> None:
    state.record(tree(5))
    assert slots(state.path) == (slot_of(tree(5)), slot_of(tree(5)))
    inode = state.path.stat().st_ino
    state.record(tree(7))
    assert slots(state.path) == (slot_of(tree(5)), slot_of(tree(7)))
    state.record(tree(9))
    assert slots(state.path) == (slot_of(tree(9)), slot_of(tree(7)))
    # Written in place: the same file, not one created and renamed over.
    assert state.path.stat().st_ino == inode
    assert SignedTreeState(state.path).read() == tree(9)
    assert state.path.stat().st_mode & 0o777 == 0o600


class Crash(BaseException):
    """The process dies here."""


@pytest.mark.parametrize("kept", [0, 1, 40, 93, 120, SLOT // 2, SLOT - 2, SLOT - 1])
def test_a_write_torn_by_a_crash_leaves_the_previous_record(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    state.record(tree(5))
    state.record(tree(7))

    def torn(fd: int, data: bytes, offset: int) -> int:
        written = real_pwrite(fd, data[:kept], offset)
        raise Crash(written)

    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", torn)
    with pytest.raises(Crash):
        state.record(tree(9, fill=1))
    monkeypatch.undo()
    # Read afresh, as a restarted process does: the tree recorded before the crash, or
    # the new one once every byte that differs from the slot's old content is on disk (the
    # padding is the same), never anything else.
    expected = tree(7) if kept < len(slot_of(tree(9)).rstrip()) else tree(9, fill=1)
    assert SignedTreeState(state.path).read() == expected
    assert state.read() == expected
    # And the next record goes on from there.
    state.record(tree(9, fill=1))
    assert SignedTreeState(state.path).read() == tree(9, fill=1)


def test_garbage_in_the_slot_being_written_leaves_the_previous_record(
    state: SignedTreeState,
) -> None:
    state.record(tree(5))
    state.record(tree(7))  # into the second slot: the first is the one written next
    first, second = slots(state.path)
    assert second == slot_of(tree(7))
    for garbage in (b"\x00" * SLOT, os.urandom(SLOT), slot_of(tree(9, fill=1))[:150] + first[150:]):
        state.path.write_bytes(garbage + second)
        assert SignedTreeState(state.path).read() == tree(7)


def test_a_slot_whose_checksum_fails_is_never_taken_for_a_record(
    state: SignedTreeState,
) -> None:
    state.record(tree(5))
    state.record(tree(7))
    altered = slot_of(tree(9)).replace(b"\n9\n", b"\n8\n")  # a larger tree, checksum of 9
    state.path.write_bytes(altered + slot_of(tree(7)))
    assert SignedTreeState(state.path).read() == tree(7)
    flipped = bytearray(slot_of(tree(9)))
    flipped[150] ^= 0x01  # one bit of the root hash
    state.path.write_bytes(bytes(flipped) + slot_of(tree(7)))
    assert SignedTreeState(state.path).read() == tree(7)


@pytest.mark.parametrize("order", ["larger first", "larger second"])
def test_of_two_valid_slots_the_larger_tree_is_the_record(
    state: SignedTreeState, order: str
) -> None:
    pair = (slot_of(tree(9)), slot_of(tree(7)))
    state.path.write_bytes(b"".join(pair if order == "larger first" else pair[::-1]))
    assert state.read() == tree(9)
    state.record(tree(8))  # not larger: nothing written
    assert state.read() == tree(9)
    state.record(tree(10))  # over the slot of 7
    assert slot_of(tree(9)) in slots(state.path)
    assert SignedTreeState(state.path).read() == tree(10)


def test_a_slot_file_without_a_valid_record_is_refused_naming_the_file(
    state: SignedTreeState,
) -> None:
    for data, why in (
        (slot_of(tree(9))[:300] + b" " * (2 * SLOT - 300), "neither slot"),
        (slot_of(tree(9)) + slot_of(tree(9, fill=1)), "different trees of 9 entries"),
        (slot_of(tree(9)) + slot_of(tree(7))[:100], "not the 1024 of its two slots"),
    ):
        state.path.write_bytes(data)
        with pytest.raises(CheckpointError, match=f"{state.path}: .*{why}"):
            SignedTreeState(state.path).read()
        with pytest.raises(CheckpointError, match=str(state.path)):
            state.record(tree(20))
        assert state.path.read_bytes() == data


def test_a_plain_body_is_read_and_turned_into_slots_by_the_first_record(
    state: SignedTreeState,
) -> None:
    # What earlier versions wrote, and what an operator may write by hand.
    state.path.write_text(tree(7).body())
    assert state.read() == tree(7)
    state.record(tree(6))  # not larger: the plain body stays as it is
    assert state.path.read_text() == tree(7).body()
    state.record(tree(8))
    assert slots(state.path) == (slot_of(tree(8)), slot_of(tree(8)))
    assert state.path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in state.path.parent.iterdir()) == [
        "log.key.signed-tree",
        "log.key.signed-tree.lock",
    ]  # no temporary file left behind
    # An operator writes a plain body over the slots (say, `pin-head` after deleting it by
    # hand): read as written, then slots again.
    state.path.write_text(tree(3).body())
    assert state.read() == tree(3)
    state.record(tree(4))
    assert slots(state.path) == (slot_of(tree(4)), slot_of(tree(4)))


def test_a_checkpoint_too_large_for_a_slot_is_refused_and_nothing_written(
    state: SignedTreeState,
) -> None:
    state.record(tree(5))
    before = state.path.read_bytes()
    long = Checkpoint("x" * 400, 6, bytes(32))
    with pytest.raises(CheckpointError, match=rf"{state.path}: .*origin \(400 bytes\) is too long"):
        state.record(long)
    assert state.path.read_bytes() == before
    fits = Checkpoint("x" * (SLOT - 93 - 1 - len("\n6\n") - 44 - 1), 6, bytes(32))
    state.record(fits)
    assert SignedTreeState(state.path).read() == fits


def test_every_write_is_synced_before_the_record_returns(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The durability contract, as system calls: each file descriptor written to is
    fsync'd or fdatasync'd before it is closed (the directory too, after a rename)."""
    events: list[tuple[str, int]] = []

    def noting(name: str, call: Callable[..., object]) -> Callable[..., object]:
        def noted(fd: int, *args: object) -> object:
            events.append((name, fd))
            return call(fd, *args)

        return noted

    for name in ("write", "pwrite", "fsync", "fdatasync", "close"):
        monkeypatch.setattr(os, name, noting(name, getattr(os, name)))
    for size in (5, 7, 9):
        events.clear()
        state.record(tree(size))
        writes = [i for i, (name, _) in enumerate(events) if name in ("write", "pwrite")]
        assert writes, events
        for at in writes:
            fd = events[at][1]
            until_closed = []
            for name, f in events[at + 1 :]:
                if f == fd:
                    if name == "close":
                        break
                    until_closed.append(name)
            assert {"fsync", "fdatasync"} & set(until_closed), (size, events)
    assert SignedTreeState(state.path).read() == tree(9)


def test_without_pwrite_fdatasync_or_flock_the_record_still_works(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on Windows (no fcntl, no pwrite) and macOS (no fdatasync).
    monkeypatch.setattr(checkpoint_module, "fcntl", None)
    monkeypatch.delattr(os, "pwrite")
    monkeypatch.delattr(os, "fdatasync")
    for size in (5, 7, 6, 9):
        state.record(tree(size))
    assert slots(state.path) == (slot_of(tree(9)), slot_of(tree(7)))
    assert SignedTreeState(state.path).read() == tree(9)


@pytest.mark.parametrize("how", ["record", "begin_record"])
def test_threads_recording_at_once_end_with_the_largest(tmp_path: Path, how: str) -> None:
    path = tmp_path / "log.key.signed-tree"
    SignedTreeState(path).record(tree(0))
    sizes = list(range(1, 201))

    def record_every(start: int) -> None:
        state = SignedTreeState(path)  # its own, as another process has
        for size in sizes[start::4]:
            if how == "record":
                state.record(tree(size))
            else:  # as the log does: the slot here, the sync in its worker (here, at once)
                state.begin_record(tree(size))()
            recorded = state.read()
            assert recorded is not None and recorded.size >= size

    threads = [threading.Thread(target=record_every, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SignedTreeState(path).read() == tree(200)
    assert slot_of(tree(200)) in slots(path)


RECORDER = f"""
import sys
from pathlib import Path
from gateway.audit.checkpoint import Checkpoint, SignedTreeState
state = SignedTreeState(Path(sys.argv[1]))
for size in range(int(sys.argv[2]), 1201, 3):
    checkpoint = Checkpoint({ORIGIN!r}, size, bytes(32))
    if sys.argv[3] == "record":
        state.record(checkpoint)
    else:
        state.begin_record(checkpoint)()
    assert state.read().size >= size
"""


@pytest.mark.parametrize(
    "hows", [("record",) * 3, ("begin_record",) * 3, ("begin_record", "record", "begin_record")]
)
def test_processes_recording_at_once_end_with_the_largest(
    tmp_path: Path, hows: tuple[str, ...]
) -> None:
    path = tmp_path / "log.key.signed-tree"
    SignedTreeState(path).record(tree(0))
    processes = [
        subprocess.Popen([sys.executable, "-c", RECORDER, str(path), str(start), how])
        for start, how in zip((1, 2, 3), hows, strict=True)
    ]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    assert SignedTreeState(path).read() == tree(1200)


def test_a_record_waits_for_one_being_written_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers read the same recorded tree, so both would write the other slot: the
    # second must not read before the first has written (the advisory lock), or the
    # smaller tree could land last over the larger one.
    path = tmp_path / "log.key.signed-tree"
    SignedTreeState(path).record(tree(5))
    SignedTreeState(path).record(tree(7))
    held, release = threading.Event(), threading.Event()
    real_pwrite = os.pwrite

    def held_pwrite(fd: int, data: bytes, offset: int) -> int:
        if threading.current_thread().name == "first":
            held.set()
            release.wait(timeout=10)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", held_pwrite)
    first = threading.Thread(target=SignedTreeState(path).record, args=(tree(9),), name="first")
    first.start()
    assert held.wait(timeout=10)
    second_done = threading.Event()

    def second() -> None:
        SignedTreeState(path).record(tree(8))
        second_done.set()

    threading.Thread(target=second, daemon=True).start()
    # Not a clock in an assertion: with the lock the second writer cannot finish, however
    # long it is given; only a broken lock makes this wait return True.
    assert not second_done.wait(timeout=0.5)
    release.set()
    first.join(timeout=10)
    assert second_done.wait(timeout=10)
    assert slots(path) == (slot_of(tree(9)), slot_of(tree(7)))


def test_after_a_failed_sync_every_later_record_fails_rather_than_trusting_the_page_cache(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed fdatasync leaves the written slot in the page cache, where a later read finds
    the new tree; whether it reached the disk is unknown (and Linux may report the error
    only once). A later record of the same tree must not take it as durable: it fails, and
    so does every record after it, so the log refuses to sign (fail closed) until restart."""
    state.record(tree(5))
    state.record(tree(7))
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError):
        state.record(tree(9))
    monkeypatch.setattr(os, "fdatasync", real)
    # The slot holds tree 9 as far as reads can tell...
    assert SignedTreeState(state.path).read() == tree(9)
    # ...but the retry the log makes, and any record after it, fail.
    for size in (9, 10):
        with pytest.raises(OSError, match="fdatasync"):
            state.record(tree(size))


# begin_record: the same record in two parts, the slot's write on the caller's thread and
# its fdatasync in the callable the log hands to its worker thread.


def lock_is_free(path: Path) -> bool:
    """Whether another open of the record's lock file could take it now."""
    import fcntl

    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


needs_flock = pytest.mark.skipif(checkpoint_module.fcntl is None, reason="no flock here")


@needs_flock
def test_a_begun_record_is_synced_and_its_lock_released_only_by_its_callable(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.record(tree(5))
    state.record(tree(7))
    events: list[tuple[str, int]] = []
    for name in ("pwrite", "fdatasync", "close"):
        real = getattr(os, name)

        def noted(fd: int, *args: object, _name: str = name, _real: Any = real) -> object:
            events.append((_name, fd))
            return _real(fd, *args)

        monkeypatch.setattr(os, name, noted)
    make_durable = state.begin_record(tree(9))
    # The slot is written (the page cache holds it) but not synced, and the lock is held:
    # another writer, which would read the new slot as the record, must wait.
    [(_, written_fd)] = [event for event in events if event[0] == "pwrite"]
    assert ("fdatasync", written_fd) not in events
    assert slots(state.path) == (slot_of(tree(9)), slot_of(tree(7)))
    assert not lock_is_free(state.path)
    make_durable()
    assert events.index(("fdatasync", written_fd)) < events.index(("close", written_fd))
    assert lock_is_free(state.path)
    assert SignedTreeState(state.path).read() == tree(9)


@needs_flock
def test_a_record_begun_while_another_writer_holds_the_lock_is_all_done_by_its_callable(
    state: SignedTreeState,
) -> None:
    import fcntl

    state.record(tree(5))
    before = state.path.read_bytes()
    fd = os.open(state.path.with_name(state.path.name + ".lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        make_durable = state.begin_record(tree(6))  # does not wait for the lock
        assert state.path.read_bytes() == before
    finally:
        os.close(fd)
    make_durable()
    assert SignedTreeState(state.path).read() == tree(6)


@pytest.mark.parametrize("start", ["none", "plain body", "slots"])
def test_a_begun_record_ends_as_record_would(state: SignedTreeState, start: str) -> None:
    if start == "plain body":
        state.path.write_text(tree(3).body())
    elif start == "slots":
        state.record(tree(3))
    state.begin_record(tree(4))()
    assert slots(state.path)[0 if start != "slots" else 1] == slot_of(tree(4))
    state.begin_record(tree(2))()  # smaller: nothing written
    assert SignedTreeState(state.path).read() == tree(4)
    assert checkpoint_module.fcntl is None or lock_is_free(state.path)


def test_a_begun_record_that_cannot_be_written_raises_from_its_callable(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.record(tree(5))

    def failing(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", failing)
    make_durable = state.begin_record(tree(6))  # raises nothing itself
    with pytest.raises(OSError, match="No space"):
        make_durable()
    assert SignedTreeState(state.path).read() == tree(5)
    assert checkpoint_module.fcntl is None or lock_is_free(state.path)


def test_after_a_failed_sync_of_a_begun_record_every_later_record_fails(
    state: SignedTreeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.record(tree(5))
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output"):
        state.begin_record(tree(6))()
    monkeypatch.setattr(os, "fdatasync", real)
    for size in (6, 7):
        with pytest.raises(OSError, match="fdatasync"):
            state.begin_record(tree(size))()
        with pytest.raises(OSError, match="fdatasync"):
            state.record(tree(size))
