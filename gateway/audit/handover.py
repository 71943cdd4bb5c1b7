"""Key handovers: how the log's signing key is rotated without breaking verification.

A handover is a checkpoint like any other (the batch that appends the rotation's own
record signs it), whose body carries two extension lines after the root hash
(c2sp.org/tlog-checkpoint allows them; readers that do not know them ignore them)::

    <origin>
    <tree size>
    <root hash>
    key-handover-from <old verifier key>
    key-handover-to <new verifier key>

and which is signed by BOTH keys: the old key says "from this tree head on, trust the new
key", the new key says "my predecessor was the old key". So a chain of keys can be walked
from any key in it, forward (the pinned key signed the handover naming its successor) and
backward (the pinned key cosigned the handover naming its predecessor). The new key
continues the SAME tree: every checkpoint after the handover must be signed by the new key
and be consistent with the handover head (``TreeVerifier`` checks the handovers as older
checkpoints), and a checkpoint the old key signed after it is refused.

What this does not stop: whoever holds the current key can hand over to a key of their
own. That is the same power as signing anything with it; a witness holding every
checkpoint (README, "Outside witnesses") sees such a handover like any other checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.audit.checkpoint import Checkpoint, CheckpointError, Signer, Verifier, open_note

FROM_PREFIX: Final = "key-handover-from "
TO_PREFIX: Final = "key-handover-to "


class HandoverSigner(Signer):
    """The outgoing key, for its last batch: every note it signs names ``successor`` in the
    handover lines and carries the successor's signature too (old key's first)."""

    def __init__(self, current: Signer, successor: Signer) -> None:
        if successor.name != current.name:
            raise CheckpointError("the new key must carry the log's origin as its name")
        if successor.verifier == current.verifier:
            raise CheckpointError("a key cannot be handed over to itself")
        super().__init__(current.name, current._seed)
        self.successor = successor

    def sign_note(self, text: str) -> str:
        body = text + handover_lines(self.verifier, self.successor.verifier)
        cosigned = self.successor.sign_note(body)
        return super().sign_note(body) + cosigned[len(body) + 1 :]

    def __repr__(self) -> str:
        return f"HandoverSigner({self.verifier} -> {self.successor.verifier})"


def handover_lines(old: Verifier, new: Verifier) -> str:
    return f"{FROM_PREFIX}{old}\n{TO_PREFIX}{new}\n"


@dataclass(frozen=True, slots=True)
class Handover:
    """A handover note as it reads (not yet verified): the tree head and the two keys."""

    checkpoint: Checkpoint
    old: Verifier
    new: Verifier
    note: str


def note_text(note: str | bytes) -> str:
    """The signed text of a note, unverified (to learn its size and lines before choosing
    the key that must have signed it)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("the checkpoint is not UTF-8 text") from None
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("the checkpoint is not a signed note")
    return note[: split + 1]


def parse_handover(note: str | bytes) -> Handover | None:
    """The handover a note states, or None if it states none. Unverified: ``KeyChain``
    checks the signatures. Raises CheckpointError for a malformed handover line."""
    text = note_text(note)
    found = handover_in(text)
    if found is None:
        return None
    checkpoint, old, new = found
    return Handover(
        checkpoint=checkpoint,
        old=old,
        new=new,
        note=note if isinstance(note, str) else note.decode("utf-8"),
    )


def handover_in(text: str) -> tuple[Checkpoint, Verifier, Verifier] | None:
    """The tree head, old key and new key a note's signed ``text`` hands over, or None."""
    lines = text.split("\n")[3:]
    old = [line[len(FROM_PREFIX) :] for line in lines if line.startswith(FROM_PREFIX)]
    new = [line[len(TO_PREFIX) :] for line in lines if line.startswith(TO_PREFIX)]
    if not old and not new:
        return None
    if len(old) != 1 or len(new) != 1:
        raise CheckpointError("a key handover names exactly one old and one new key")
    return Checkpoint.parse_body(text), Verifier.parse(old[0]), Verifier.parse(new[0])


def is_handover(note: str | bytes) -> bool:
    """Cheap test before parsing: does the note carry a handover line at all?"""
    marker = "\n" + FROM_PREFIX
    return marker.encode() in note if isinstance(note, bytes) else marker in note


class KeyChain:
    """The log's keys in order, each trusted because the pinned key vouches for it through
    a chain of handovers. ``key_at(size)`` is the key that must sign a checkpoint of that
    tree size: the handover at size n is the old key's last (n included), a larger tree
    is the new key's."""

    def __init__(self, keys: Sequence[Verifier], handovers: Sequence[Handover]) -> None:
        self.keys = list(keys)
        self.handovers = list(handovers)

    @classmethod
    def build(cls, pinned: Verifier, notes: Iterable[str | bytes]) -> KeyChain:
        """Check the handovers ``notes`` against ``pinned``. Raises CheckpointError, saying
        which handover is wrong, unless they form one unbroken chain of keys, each signed
        by both its keys, that holds the pinned key."""
        handovers = []
        for note in notes:
            handover = parse_handover(note)
            if handover is None:
                raise CheckpointError("a note given as a key handover names no new key")
            handovers.append(handover)
        handovers.sort(key=lambda h: h.checkpoint.size)
        if not handovers:
            return cls([pinned], [])
        keys = [handovers[0].old]
        for previous, handover in zip([None, *handovers], handovers, strict=False):
            size = handover.checkpoint.size
            if previous is not None and previous.checkpoint.size == size:
                raise CheckpointError(f"two key handovers at tree size {size}")
            if handover.old != keys[-1]:
                raise CheckpointError(
                    f"the key handover at tree size {size} is from {handover.old}, but the"
                    f" key in use then was {keys[-1]}: the chain of keys is broken"
                )
            keys.append(handover.new)
        if pinned not in keys:
            raise CheckpointError(
                f"the pinned key {pinned} is not one of this log's keys"
                f" ({', '.join(str(k) for k in keys)})"
            )
        # Each handover must be signed by both keys it names. With the pinned key trusted,
        # induction trusts the rest: forward, a trusted key signed the next one's name;
        # backward, a trusted key cosigned its predecessor's name.
        for handover in handovers:
            size = handover.checkpoint.size
            for key, role in ((handover.old, "outgoing"), (handover.new, "incoming")):
                try:
                    open_note(handover.note, key)
                except CheckpointError as exc:
                    raise CheckpointError(
                        f"the key handover at tree size {size} is not signed by its {role}"
                        f" key: {exc}"
                    ) from None
            if handover.checkpoint.origin != pinned.name:
                raise CheckpointError(
                    f"the key handover at tree size {size} is for log"
                    f" {handover.checkpoint.origin!r}, not {pinned.name!r}"
                )
        return cls(keys, handovers)

    @property
    def current(self) -> Verifier:
        """The last key in the chain: the one that signs now."""
        return self.keys[-1]

    def key_at(self, size: int) -> Verifier:
        for index, handover in enumerate(self.handovers):
            if size <= handover.checkpoint.size:
                return self.keys[index]
        return self.keys[-1]

    def open(self, note: str | bytes, what: str) -> Checkpoint:
        """The checkpoint ``note`` signs, if the key in use at its tree size signed it."""
        try:
            size = Checkpoint.parse_body(note_text(note)).size
            return Checkpoint.open(note, self.key_at(size))
        except CheckpointError as exc:
            raise CheckpointError(f"{what}: {exc}") from None

    @property
    def heads(self) -> list[Checkpoint]:
        """The handover tree heads: every later tree must extend them."""
        return [h.checkpoint for h in self.handovers]
