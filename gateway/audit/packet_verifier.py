"""The offline verifier of a disclosure packet: the packet directory and the log's public
key, nothing else (no database, no settings, no network).

What is checked, each failure named in the report:

* the checkpoint carries a valid signature by the given key, and the packet restates its
  size and root, and the key's fingerprint, truthfully;
* each entry: its leaf hash is recomputed from its content (SHA-256(0x00 || JCS(entry))),
  its ``seq`` is where it claims, and its inclusion proof takes that hash to the signed
  root; it is an entry of the case (``packet.belongs_to_case``); no seq appears twice;
* the packet's own disclosure record is there, proved like any entry, and lists exactly the
  seqs of the case's entries in the packet: an entry dropped from the packet, or slipped in,
  fails (the list is inside a signed leaf, so it cannot be edited to match);
* each consistency hint proves its earlier checkpoint is a prefix of this one, and every
  older checkpoint the verifier was given (e.g. an earlier packet's) has such a proof.

``packet.html`` is a rendering of ``packet.json``, not evidence: if it is not what this
version renders from the packet, that is a warning, not a failure.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rfc8785
from pydantic import BaseModel, ValidationError

from gateway.audit import merkle, packet_html
from gateway.audit.checkpoint import Checkpoint, CheckpointError, Verifier
from gateway.audit.packet import (
    CHECKPOINT_FILE,
    DISCLOSE_ACTION,
    FORMAT,
    HTML_FILE,
    PACKET_FILE,
    VERSION,
    DisclosurePacket,
    PacketEntry,
    belongs_to_case,
    fingerprint,
    linked_ids,
)


class EntryResult(BaseModel):
    """One entry's verdict; ``problem`` says what is wrong when ``ok`` is false."""

    seq: int
    ok: bool
    event_type: str | None = None
    problem: str | None = None


class PacketReport(BaseModel):
    """``ok`` only if the checkpoint, every entry and the packet as a whole verify."""

    ok: bool
    case_number: str | None = None
    tree_size: int | None = None
    root_hash: str | None = None
    entry_count: int | None = None
    problems: list[str] = []  # about the packet as a whole
    warnings: list[str] = []  # worth knowing, not a failure of what the log signed
    entries: list[EntryResult] = []


def verify_packet(
    directory: Path, verifier: Verifier, *, older: Sequence[bytes] = ()
) -> PacketReport:
    """Verify the packet in ``directory`` against ``verifier``; ``older`` are checkpoints
    the reader already holds (signed notes), each of which must be a prefix of this one.
    Never raises for bad input: what is wrong is in the report."""
    try:
        raw = json.loads((directory / PACKET_FILE).read_bytes())
        packet = DisclosurePacket.model_validate(raw)
    except OSError as exc:
        return PacketReport(ok=False, problems=[f"cannot read {PACKET_FILE}: {exc.strerror}"])
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        return PacketReport(ok=False, problems=[f"{PACKET_FILE} is not a packet: {first}"])
    problems: list[str] = []
    if packet.format != FORMAT or packet.version != VERSION:
        problems.append(f"unknown format {packet.format!r} version {packet.version}")
    checkpoint = _checkpoint(directory, packet, verifier, problems)
    results = _entries(packet, checkpoint)
    problems.extend(_completeness(packet, results))
    if checkpoint is not None:
        problems.extend(_consistency(packet, checkpoint, verifier, older))
    warnings = []
    html = directory / HTML_FILE
    if html.is_file() and html.read_bytes() != packet_html.render(packet).encode("utf-8"):
        # Not a failure: another facegate version renders the same packet differently. But
        # a reader of the page should know it is not what this packet.json says.
        warnings.append(
            f"{HTML_FILE} is not this version's rendering of {PACKET_FILE}: only {PACKET_FILE}"
            " is verified; read the entries there"
        )
    return PacketReport(
        warnings=warnings,
        ok=not problems and all(r.ok for r in results),
        case_number=packet.case_number,
        tree_size=None if checkpoint is None else checkpoint.size,
        root_hash=None if checkpoint is None else _b64(checkpoint.root_hash),
        entry_count=packet.entry_count,
        problems=problems,
        entries=sorted(results, key=lambda r: r.seq),
    )


def _checkpoint(
    directory: Path, packet: DisclosurePacket, verifier: Verifier, problems: list[str]
) -> Checkpoint | None:
    if packet.log.public_key_fingerprint != fingerprint(verifier):
        problems.append(
            f"the packet names the key {packet.log.public_key_fingerprint}, the key given is"
            f" {fingerprint(verifier)}"
        )
    try:
        checkpoint = Checkpoint.open(packet.checkpoint.note, verifier)
    except CheckpointError as exc:
        problems.append(f"bad checkpoint: {exc}")
        return None
    if (packet.checkpoint.tree_size, packet.checkpoint.root_hash) != (
        checkpoint.size,
        _b64(checkpoint.root_hash),
    ):
        problems.append("the packet misstates the signed checkpoint's tree size or root")
    path = directory / CHECKPOINT_FILE
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") != (
        packet.checkpoint.note
    ):
        problems.append(f"{CHECKPOINT_FILE} is not the checkpoint inside {PACKET_FILE}")
    return checkpoint


def _entries(packet: DisclosurePacket, checkpoint: Checkpoint | None) -> list[EntryResult]:
    warrants, sessions = linked_ids((e.entry for e in packet.entries), packet.case_number)
    seen: set[int] = set()
    results = []
    for item in packet.entries:
        problem = _entry_problem(item, checkpoint)
        if problem is None and item.seq in seen:
            problem = f"seq {item.seq} appears twice"
        if problem is None and not belongs_to_case(
            item.entry, packet.case_number, warrants=warrants, sessions=sessions
        ):
            problem = f"not an entry of case {packet.case_number}"
        seen.add(item.seq)
        event_type = item.entry.get("event_type")
        results.append(
            EntryResult(
                seq=item.seq,
                ok=problem is None,
                event_type=event_type if isinstance(event_type, str) else None,
                problem=problem,
            )
        )
    return results


def _entry_problem(item: PacketEntry, checkpoint: Checkpoint | None) -> str | None:
    if item.entry.get("seq") != item.seq:
        return f"the entry's own seq is {item.entry.get('seq')!r}, not {item.seq}"
    try:
        leaf_hash = merkle.leaf_hash(rfc8785.dumps(item.entry))
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        return f"the entry cannot be canonicalised: {exc}"
    if _b64(leaf_hash) != item.leaf_hash:
        return "the entry's content does not hash to the leaf hash stated: it was altered"
    if checkpoint is None:
        return "not proved: no valid checkpoint"
    try:
        proof = [base64.b64decode(h, validate=True) for h in item.inclusion_proof]
        merkle.verify_inclusion(
            leaf_hash, item.seq - 1, checkpoint.size, proof, checkpoint.root_hash
        )
    except (binascii.Error, ValueError) as exc:  # merkle.ProofError is a ValueError
        return f"the inclusion proof fails: {exc}"
    return None


def _completeness(packet: DisclosurePacket, results: list[EntryResult]) -> list[str]:
    """The packet against its disclosure record: the list the log signed."""
    own = [e for e in packet.entries if e.seq == packet.disclosure_seq]
    verified = {r.seq for r in results if r.ok}
    if not own or packet.disclosure_seq not in verified:
        return [
            f"the disclosure record (seq {packet.disclosure_seq}) is missing or does not"
            " verify: nothing says which entries the case has"
        ]
    detail: Any = own[0].entry.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    claimed = {
        "action": DISCLOSE_ACTION,
        "case_number": packet.case_number,
        "packet_id": packet.packet_id,
        "as_of_tree_size": packet.as_of_tree_size,
        "entry_count": packet.entry_count,
        "seqs": packet.seqs,
    }
    problems = [
        f"the disclosure record says {name} {detail.get(name)!r}, the packet {value!r}"
        for name, value in claimed.items()
        if detail.get(name) != value
    ]
    if own[0].entry.get("event_type") != "audit_read":
        problems.append("the disclosure record is not an audit read")
    if len(packet.seqs) != packet.entry_count:
        problems.append(f"the packet lists {len(packet.seqs)} seqs but counts {packet.entry_count}")
    listed = set(detail.get("seqs") or [])
    present = {e.seq for e in packet.entries} - {packet.disclosure_seq}
    problems.extend(
        f"seq {seq} is an entry of the case (listed in the disclosure record) but is not in"
        " the packet: withheld"
        for seq in sorted(listed - present)
    )
    problems.extend(
        f"seq {seq} is in the packet but not in the disclosure record's list"
        for seq in sorted(present - listed)
    )
    return problems


def _consistency(
    packet: DisclosurePacket, checkpoint: Checkpoint, verifier: Verifier, older: Sequence[bytes]
) -> list[str]:
    problems = []
    proved: dict[int, bytes] = {checkpoint.size: checkpoint.root_hash}
    for hint in packet.consistency:
        try:
            root = base64.b64decode(hint.root_hash, validate=True)
            proof = [base64.b64decode(h, validate=True) for h in hint.proof]
            merkle.verify_consistency(
                hint.tree_size, checkpoint.size, root, checkpoint.root_hash, proof
            )
        except (binascii.Error, ValueError) as exc:
            problems.append(
                f"the consistency proof from the earlier packet's tree of {hint.tree_size}"
                f" entries fails: {exc}"
            )
            continue
        proved[hint.tree_size] = root
    for number, note in enumerate(older, start=1):
        try:
            earlier = Checkpoint.open(note, verifier)
        except CheckpointError as exc:
            problems.append(f"older checkpoint {number}: {exc}")
            continue
        if earlier.size not in proved:
            problems.append(
                f"older checkpoint {number} (tree of {earlier.size} entries): the packet"
                " carries no consistency proof from it; ask the log for one"
            )
        elif proved[earlier.size] != earlier.root_hash:
            problems.append(
                f"older checkpoint {number} (tree of {earlier.size} entries) is not a prefix"
                " of this packet's tree: the log was rewritten since it was signed"
            )
    return problems


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
