"""Signed checkpoints: the C2SP tlog-checkpoint format inside a C2SP signed note, Ed25519.

What this follows, detail by detail, so that a witness or Go's
``golang.org/x/mod/sumdb/note`` reads our checkpoints (c2sp.org/signed-note,
c2sp.org/tlog-checkpoint):

* A note is UTF-8 text ending in a newline, a blank line, then signature lines. The text is
  what is signed, including its final newline. Text lines carry no control characters.
* A signature line is U+2014 EM DASH, U+0020 SPACE, the key name, a space, and the standard
  (padded) base64 of the 4-byte key ID followed by the signature, then a newline.
* A key name is non-empty and holds no Unicode whitespace and no ``+``.
* Ed25519 key ID: the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key),
  0x01 being the Ed25519 signature type. Keys are written the way the Go package writes
  them: verifier ``<name>+<key ID, 8 hex>+<base64(0x01 || public key)>`` and signer
  ``PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || 32-byte seed)>``.
* Verifiers ignore signatures by keys they do not know, and reject a note that carries
  none by the key they trust. More than 100 signatures is refused (Go's limit).
* The checkpoint body is: origin line, tree size in ASCII decimal without leading zeros,
  the root hash in standard base64, each ending in a newline; extension lines may follow
  and are ignored here. The key name is the origin (the convention Sunlight and Tessera
  logs follow, and what witnesses expect).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE
from gateway.errors import VerificationError

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

SIGNATURE_PREFIX: Final = "\u2014 "  # "— "
ALG_ED25519: Final = 0x01
MAX_SIGNATURES: Final = 100
_PRIVATE_PREFIX: Final = "PRIVATE+KEY+"
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,18}")


class CheckpointError(VerificationError):
    """A malformed key, note or checkpoint, or one whose signature does not verify. The
    message says which, in words an auditor can act on."""


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class Verifier:
    """A log's public key, as the verifier key string ``name+keyid+base64``."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _valid_name(parts[0]):
            raise CheckpointError("a public key must read <name>+<key id>+<base64 key>")
        name, hash_hex, encoded = parts
        raw = _b64decode(encoded, "the public key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("the public key is not an Ed25519 note key")
        verifier = cls(name=name, public_key=raw[1:])
        if hash_hex != verifier.key_id.hex():
            raise CheckpointError("the public key's key id does not match its name and key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """A log's private key. Signs notes; never leaves the gateway host."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not _valid_name(name):
            raise CheckpointError(f"{name!r} is not a valid key name (no spaces, no '+')")
        if len(seed) != 32:
            raise CheckpointError("an Ed25519 seed is 32 bytes")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name=name, public_key=public)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> Signer:
        if not text.startswith(_PRIVATE_PREFIX):
            raise CheckpointError("a log signing key must start with PRIVATE+KEY+")
        parts = text.strip()[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a log signing key must read PRIVATE+KEY+<name>+<id>+<key>")
        name, hash_hex, encoded = parts
        raw = _b64decode(encoded, "the signing key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("the signing key is not an Ed25519 note key")
        signer = cls(name, raw[1:])
        if hash_hex != signer.verifier.key_id.hex():
            raise CheckpointError("the signing key's key id does not match its name and key")
        return signer

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self._seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    def __repr__(self) -> str:  # never the seed, not even in a traceback
        return f"Signer({self.verifier})"

    def sign_note(self, text: str) -> str:
        """``text`` followed by a blank line and this key's signature line."""
        _check_text(text)
        signature = self._key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"

    @classmethod
    def load_or_create(cls, path: Path, name: str) -> Signer:
        """Read the key file, creating it (mode 0600, O_EXCL) if it does not exist.

        Two processes starting at once cannot write two keys: the loser reads the
        winner's. A key created here has signed nothing, and says so: its
        ``SignedTreeState`` is created beside it, recording the empty tree (copy both
        files to another host). Raises CheckpointError naming the file if it holds no valid
        key, or a key for another name (the log's origin changed under a key made for the
        old one).
        """
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(str(cls.generate(name)) + "\n")
                SignedTreeState.beside(path).record(Checkpoint(name, 0, EMPTY_ROOT))
        try:
            signer = cls.parse(path.read_text())
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if signer.name != name:
            raise CheckpointError(
                f"{path} holds a key for log {signer.name!r}, not for {name!r}"
                " (FACEGATE_LOG_ORIGIN)"
            )
        return signer


# Characters below U+0020 but the newline: one regex search a note rather than a Python
# loop over its characters (every batch signs one).
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise CheckpointError("a note's text must end with a newline")
    if _CONTROL.search(text) is not None or "\n\n" in text:
        raise CheckpointError("a note's text holds control characters or a blank line")


def open_note(note: str | bytes, verifier: Verifier) -> str:
    """The text of ``note`` if it carries a valid signature by ``verifier``.

    Raises CheckpointError saying what is wrong: not a note, a malformed signature line,
    no signature by this key (naming the keys that did sign), or a bad signature.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("the checkpoint is not UTF-8 text") from None
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise CheckpointError(
            "the checkpoint is not a signed note (text, a blank line, signature lines)"
        )
    text, signatures = note[: split + 1], note[split + 2 :]
    _check_text(text)
    lines = signatures.splitlines()
    if not lines:
        raise CheckpointError("the checkpoint carries no signature")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"the checkpoint carries more than {MAX_SIGNATURES} signatures")
    signed_by: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError(f"signature line {number} does not start with '— '")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not _valid_name(name) or not encoded or " " in encoded:
            raise CheckpointError(f"signature line {number} is not '— <key name> <base64>'")
        raw = _b64decode(encoded, f"signature line {number}")
        if len(raw) < 5:
            raise CheckpointError(f"signature line {number} is too short")
        signed_by.append(name)
        if name != verifier.name or raw[:4] != verifier.key_id:
            continue
        if not verifier.verify(text.encode(), raw[4:]):
            raise CheckpointError(
                f"the signature by {verifier.name} does not verify: the checkpoint was altered"
            )
        return text
    raise CheckpointError(
        f"the checkpoint is not signed by the key {verifier} (signed by: {', '.join(signed_by)})"
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the tree of ``size`` leaves has root ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return f"{self.origin}\n{self.size}\n{root}\n"

    def sign(self, signer: Signer) -> str:
        if signer.name != self.origin:
            raise CheckpointError("the log signs with a key named after its origin")
        return signer.sign_note(self.body())

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint has an origin, a tree size and a root hash line")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin:
            raise CheckpointError("the checkpoint's origin line is empty")
        if not _DECIMAL.fullmatch(size):
            raise CheckpointError(f"the checkpoint's tree size {size!r} is not a decimal number")
        root_hash = _b64decode(root, "the checkpoint's root hash")
        if len(root_hash) != HASH_SIZE:
            raise CheckpointError("the checkpoint's root hash is not 32 bytes")
        return cls(origin=origin, size=int(size), root_hash=root_hash)

    @classmethod
    def open(
        cls, note: str | bytes, verifier: Verifier, *, origin: str | None = None
    ) -> Checkpoint:
        """Verify the note's signature, then parse the checkpoint it signs.

        ``origin`` defaults to the key's name; a checkpoint for another log is refused.
        """
        checkpoint = cls.parse_body(open_note(note, verifier))
        expected = origin or verifier.name
        if checkpoint.origin != expected:
            raise CheckpointError(
                f"the checkpoint is for log {checkpoint.origin!r}, not {expected!r}"
            )
        return checkpoint


class SignedTreeState:
    """The last tree this log's key signed (size and root), in a small file beside the key.

    Why here: the checkpoints in the database are only as trustworthy as the database. Its
    owner cannot forge a signature, but without the key can empty or cut back
    ``audit_checkpoint``, rebuild ``audit_log`` and ``audit_tree`` (a log without a signer
    still sequences entries), and the gateway's next append would sign the rewritten tree:
    a checkpoint that contradicts the ones auditors already hold, made with the real key.
    This file sits where the key sits, which the database owner cannot write (the host's
    file system, mode 0600 like the key), so the key never signs a tree that is not a
    consistent extension of the last one it signed (``AuditLog`` checks a consistency
    proof against it before every signature, and refuses to append otherwise).

    The file is created with the key (``Signer.load_or_create``), recording the empty
    tree, and travels with it: a host given the key gets the file too. Lost (or a key from
    a version that kept none), the log refuses to sign once the database holds a
    checkpoint, until an operator checks the log and pins one (``facegate audit pin-head``):
    trusting whatever the database holds then is exactly what a rewrite needs.

    What it does not protect against: whoever can write the key's directory (they hold the
    key, so they can sign anything); a copy of the file restored from an older backup; and
    replicas on other hosts, each of which only knows what it signed itself, so a rewrite
    after another host's last signature and before this host's goes unseen here. An
    outside witness that co-signs or keeps every checkpoint (README, "Outside witnesses")
    closes those gaps.

    The file holds two fixed-size slots of ``SLOT_SIZE`` bytes, text an operator can read:
    a header line ``facegate-signed-tree sha256:<hex of the body's SHA-256>``, a checkpoint
    body (origin, size, base64 root: ``Checkpoint.body``), spaces, a newline. The recorded
    tree is the one in the valid slot (its checksum matches) of the larger size. ``record``
    writes the slot that does not hold that tree, in place (``pwrite``, then
    ``fdatasync``: the file's size never changes, so no metadata need reach the disk, and
    the cost is one data write instead of a file creation, a rename and two fsyncs, the
    largest CPU cost per request of the log's writer thread). A crash mid-write can tear
    only that slot, whose checksum then fails, so it leaves the old or the new record,
    never a torn one; and the record is durable when ``record`` returns.

    A file that is not in the slot layout is read as a plain checkpoint body: what versions
    before the slots wrote, and what an operator may write by hand. The first ``record``
    over such a file (or with no file) writes the slot file whole, the old way: a temporary
    file, fsync'd, renamed over, and the directory fsync'd. ``record`` only ever moves the
    record forward: several processes on one host share the file and finish their batches
    in any order, under an advisory lock where the OS has one.
    """

    SUFFIX: Final = ".signed-tree"
    SLOT_SIZE: Final = 512

    def __init__(self, path: Path) -> None:
        self.path = path
        # The file's bytes as last read or written here, the tree they record and the slot
        # holding it. Replaced whole (one assignment), so the writer's thread and the event
        # loop may both use it.
        self._known: _Known | None = None
        # Set by a failed fdatasync, for good: see `record`.
        self._sync_failed: OSError | None = None

    @classmethod
    def beside(cls, key_file: Path) -> SignedTreeState:
        return cls(key_file.with_name(key_file.name + cls.SUFFIX))

    def read(self) -> Checkpoint | None:
        """The recorded tree, or None if the file does not exist. Raises CheckpointError
        naming the file if it holds anything else, and OSError if it cannot be read."""
        data = self._read_bytes()
        return None if data is None else self._parse(data).checkpoint

    def record(self, checkpoint: Checkpoint) -> None:
        """Make ``checkpoint`` the recorded tree unless a larger one is recorded already.
        Durable when it returns. Raises OSError if the file cannot be written, and
        CheckpointError (naming the file) if what it holds cannot be read, or if the
        checkpoint's body does not fit a slot (an origin of some 350 bytes).

        Once an fdatasync here has failed, every later record raises OSError, until the
        process restarts: the written slot is still in the page cache, where the next read
        finds the new tree and would take it as recorded, though whether it reached the
        disk is unknown (Linux may report a write-back error once, then sync clean). The
        log then refuses to sign (fail closed), as PostgreSQL stops on a failed fsync."""
        self._refuse_after_failed_sync()
        slot = self._slot_of(checkpoint)
        with self._locked():
            # One descriptor to read the record and write its slot: the writer's thread
            # gives up the GIL around each system call, and takes it back from a busy
            # event loop. A file that cannot be opened for writing is still read: a
            # larger tree recorded there needs no write.
            fd: int | None
            writable = True
            try:
                fd = os.open(self.path, os.O_RDWR | _O_BINARY)
            except FileNotFoundError:
                fd = None
            except PermissionError:
                fd, writable = os.open(self.path, os.O_RDONLY | _O_BINARY), False
            try:
                data = None if fd is None else _read_all(fd)
                known = None if data is None else self._parse(data)
                if known is not None and known.checkpoint.size >= checkpoint.size:
                    return
                if known is not None and known.slot is not None:
                    assert fd is not None  # known was read from it
                    if not writable:
                        os.open(self.path, os.O_RDWR | _O_BINARY)  # raises, saying why
                    written = self._write_slot(fd, known, slot, checkpoint)
                    self._sync(fd)
                    self._known = written
                    return
            finally:
                if fd is not None:
                    os.close(fd)
            # No file, or a plain body: the slot file is made whole, once. Both slots hold
            # the new tree; the next record writes the second.
            whole = slot + slot
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o600)
            try:
                os.write(fd, whole)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            _fsync_directory(self.path.parent)
            self._known = _Known(whole, checkpoint, 0)

    def begin_record(self, checkpoint: Checkpoint) -> Callable[[], None]:
        """``record`` in two parts, for a caller on an event loop: what does not wait for
        the disk is done here, and the callable returned (for a worker thread) makes it
        durable. Together they are ``record``: the callable returns, or raises, as
        ``record`` would, and the record is durable only once it has returned. Call it
        exactly once: it holds the file's advisory lock and descriptor until it runs.

        Here: the advisory lock, taken without waiting, the read, and the write of the slot
        (to the page cache). In the callable: the fdatasync, then the lock's release, so no
        other process takes the slot for the recorded tree before it is on disk. When the
        lock is held elsewhere, there is no slot file yet, an fdatasync failed before, or
        any step here fails, nothing is left done here and the callable is the whole
        ``record`` (which waits for the lock, and raises what failed). Raises nothing.

        Why two parts: ``record`` makes nine system calls, and the worker thread took the
        GIL back from the busy event loop after each; the callable makes three. At 50
        requests/s this was a tenth of a request's CPU (issue 17)."""
        whole_record = functools.partial(self.record, checkpoint)
        if self._sync_failed is not None or fcntl is None or not hasattr(os, "pwrite"):
            return whole_record
        held: list[int] = []  # descriptors to close, the lock's last (closing releases it)
        try:
            slot = self._slot_of(checkpoint)
            lock = _open_lock(self.path)
            held.append(lock)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fd = os.open(self.path, os.O_RDWR | _O_BINARY)
            held.insert(0, fd)
            # One read of at most the slot file's size and a byte, which a file in the
            # slot layout never exceeds; _parse refuses a longer one as it does in record.
            known = self._parse(os.pread(fd, 2 * self.SLOT_SIZE + 1, 0))
            if known.checkpoint.size >= checkpoint.size:
                _close_all(held)
                return _already_recorded
            if known.slot is None:  # a plain body: made whole by record, once
                _close_all(held)
                return whole_record
            written = self._write_slot(fd, known, slot, checkpoint)
        except (OSError, CheckpointError):
            _close_all(held)
            return whole_record

        def make_durable() -> None:
            try:
                self._sync(fd)
                self._known = written
            finally:
                _close_all(held)

        return make_durable

    def _refuse_after_failed_sync(self) -> None:
        if self._sync_failed is not None:
            raise OSError(
                self._sync_failed.errno,
                f"an earlier fdatasync of {self.path} failed ({self._sync_failed.strerror}):"
                " whether the record reached the disk is unknown; check the disk and restart",
            )

    def _slot_of(self, checkpoint: Checkpoint) -> bytes:
        try:
            return _encode_slot(checkpoint, self.SLOT_SIZE)
        except CheckpointError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None

    def _write_slot(self, fd: int, known: _Known, slot: bytes, checkpoint: Checkpoint) -> _Known:
        """Write ``slot`` over the slot that does not hold the recorded tree (``known``):
        torn by a crash, its checksum fails and the other slot still holds that tree. The
        file's size does not change, so fdatasync need not write its metadata. Returns
        what the file then holds; not durable before ``_sync``."""
        assert known.slot is not None
        index = 1 - known.slot
        offset = index * self.SLOT_SIZE
        _pwrite(fd, slot, offset)
        data = known.data[:offset] + slot + known.data[offset + self.SLOT_SIZE :]
        return _Known(data, checkpoint, index)

    def _sync(self, fd: int) -> None:
        try:
            _fdatasync(fd)
        except OSError as exc:
            self._sync_failed = exc
            raise

    def _read_bytes(self) -> bytes | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_BINARY)
        except FileNotFoundError:
            return None
        try:
            return _read_all(fd)
        finally:
            os.close(fd)

    def _parse(self, data: bytes) -> _Known:
        # Every signing batch reads the file twice (the check before signing, the record
        # after COMMIT), and it nearly always holds what this object read or wrote last:
        # the same bytes are the same tree, without checking and parsing them again. The
        # bytes are compared, not a file's size or time, so a change by any process or
        # person, in place or renamed over, is read afresh.
        known = self._known
        if known is not None and known.data == data:
            return known
        try:
            found = _read_slots(data, self.SLOT_SIZE)
            if found is None:
                # As Path.read_text would read it: UTF-8, universal newlines.
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise CheckpointError("the record is not UTF-8 text") from None
                text = text.replace("\r\n", "\n").replace("\r", "\n")
                known = _Known(data, Checkpoint.parse_body(text), None)
            else:
                known = _Known(data, *found)
        except CheckpointError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None
        self._known = known
        return known

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # no advisory locks (Windows): one process per key file there
            self.path.parent.mkdir(parents=True, exist_ok=True)
            yield
            return
        fd = _open_lock(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _open_lock(path: Path) -> int:
    """The advisory lock file beside the record, opened (made, with its directory, if
    need be)."""
    lock = path.with_name(path.name + ".lock")
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # the key's directory is not there yet
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)


def _close_all(descriptors: list[int]) -> None:
    for fd in descriptors:
        os.close(fd)


def _already_recorded() -> None:
    """What is left of a record when a tree at least as large is recorded already."""


@dataclass(frozen=True, slots=True)
class _Known:
    """A record file's bytes, the tree they record, and the slot holding it (None: a plain
    body, not in the slot layout)."""

    data: bytes
    checkpoint: Checkpoint
    slot: int | None


_SLOT_MAGIC: Final = b"facegate-signed-tree sha256:"
_SLOT_HEADER: Final = len(_SLOT_MAGIC) + 64 + 1  # the magic, the hex digest, a newline
# Windows opens files in text mode unless told otherwise, which would rewrite newlines.
_O_BINARY: Final[int] = getattr(os, "O_BINARY", 0)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


def _encode_slot(checkpoint: Checkpoint, size: int) -> bytes:
    body = checkpoint.body().encode("utf-8")
    room = size - _SLOT_HEADER - 1
    if len(body) > room:
        raise CheckpointError(
            f"a checkpoint of {len(body)} bytes does not fit a slot of the record ({room}"
            f" bytes): the log's origin ({len(checkpoint.origin.encode())} bytes) is too long"
        )
    digest = hashlib.sha256(body).hexdigest().encode("ascii")
    return _SLOT_MAGIC + digest + b"\n" + body + b" " * (room - len(body)) + b"\n"


def _decode_slot(slot: bytes) -> Checkpoint | None:
    """The tree a slot holds, or None if it is torn, empty or altered."""
    if not slot.startswith(_SLOT_MAGIC) or slot[_SLOT_HEADER - 1 : _SLOT_HEADER] != b"\n":
        return None
    if not slot.endswith(b"\n"):
        return None
    body = slot[_SLOT_HEADER:-1].rstrip(b" ")
    digest = slot[len(_SLOT_MAGIC) : _SLOT_HEADER - 1]
    if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
        return None
    try:
        return Checkpoint.parse_body(body.decode("utf-8"))
    except (UnicodeDecodeError, CheckpointError):
        return None


def _read_slots(data: bytes, size: int) -> tuple[Checkpoint, int] | None:
    """The recorded tree and the slot holding it, or None if ``data`` is not in the slot
    layout (a plain checkpoint body: no origin holds a space, as the magic does). Raises
    CheckpointError if it is, but holds no valid slot."""
    if not (data.startswith(_SLOT_MAGIC) or data[size:].startswith(_SLOT_MAGIC)):
        return None
    if len(data) != 2 * size:
        raise CheckpointError(
            f"the record is {len(data)} bytes, not the {2 * size} of its two slots"
        )
    first, second = _decode_slot(data[:size]), _decode_slot(data[size:])
    if second is None:
        if first is None:
            raise CheckpointError("neither slot of the record holds a valid checkpoint")
        return first, 0
    if first is None or second.size > first.size:
        return second, 1
    if first.size == second.size and first != second:
        raise CheckpointError(
            f"the record's two slots hold different trees of {first.size} entries"
        )
    return first, 0


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    if hasattr(os, "pwrite"):
        written = os.pwrite(fd, data, offset)
    else:  # Windows
        os.lseek(fd, offset, os.SEEK_SET)
        written = os.write(fd, data)
    if written != len(data):  # a regular file short-writes only when the disk is full
        raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes")


def _fdatasync(fd: int) -> None:
    # The data and what is needed to read it back, not the modification time. Not on macOS
    # or Windows, where fsync does it.
    sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is (POSIX); Windows cannot open
    # a directory, and its rename is already durable on return.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
