"""The disclosure packet's format: what a prosecutor hands the defence for one case. Pure:
no database, so that the offline verifier (``packet_verifier.py``) reads it anywhere.

A packet is a directory:

``packet.json``   the machine-readable packet (``DisclosurePacket``, below; ``format`` and
                  ``version`` say which format this is)
``packet.html``   the same, for a person: a self-contained page, nothing fetched
``checkpoint``    the signed checkpoint every proof is against, byte for byte
``log.pub``       the log's public key as the packet states it. Convenience only: verify
                  with a key obtained from the log's operator or a witness, not this file.

Each entry is the audit record exactly as the log hashed it: ``entry`` is the JSON object
whose RFC 8785 (JCS) encoding is the Merkle leaf, ``seq`` included. So anyone can check it
with any JCS library and SHA-256: leaf hash = SHA-256(0x00 || JCS(entry)) (RFC 6962), and
the RFC 6962 / 9162 inclusion proof takes it to the checkpoint's root.

Which entries a packet holds ("the entries of a case", ``belongs_to_case``): every entry
whose ``case_number`` is the case (decisions, outcomes with negative results, refusals,
leads, reviews, actions on leads, authorisations); admin actions and audit reads that name
the case in ``detail.case_number`` (a case session opened, an earlier disclosure) or
``detail.warrant.case_number`` (a warrant registered for it); and the revocation of a
warrant the case used or of a case session opened for it.

The claim of completeness is itself an entry: building a packet first appends an audit
read (``detail.action == "case.disclose"``) listing the seqs of every entry of the case up
to ``as_of_tree_size``. That record is in the packet with its own proof, so a packet from
which an entry was dropped, or into which one was slipped, no longer matches the list the
log signed. It does not prove that the list itself was complete: only the log can show
that (see ``docs/architecture.md``, "Disclosure packets").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from gateway.audit.checkpoint import Verifier

FORMAT: Final = "facegate-disclosure-packet"
VERSION: Final = 1
PACKET_FILE: Final = "packet.json"
HTML_FILE: Final = "packet.html"
CHECKPOINT_FILE: Final = "checkpoint"
PUBLIC_KEY_FILE: Final = "log.pub"
DISCLOSE_ACTION: Final = "case.disclose"

_CASE_IN_DETAIL: Final = frozenset({"admin_action", "audit_read"})


class PacketCheckpoint(BaseModel):
    """The signed checkpoint: ``note`` is verified; size and root are restated for readers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str
    tree_size: int
    root_hash: str  # base64


class PacketLog(BaseModel):
    """Which log: its origin, its verifier key, and that key's fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    origin: str
    public_key: str  # <name>+<key id>+<base64(0x01 || key)>, the Go note verifier format
    public_key_fingerprint: str  # "sha256:" + hex SHA-256 of the 32-byte Ed25519 key


class PacketEntry(BaseModel):
    """One log entry, its leaf hash and its inclusion proof against the packet's checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    entry: dict[str, Any]  # JCS(entry) is the leaf; entry["seq"] == seq
    leaf_hash: str  # base64 SHA-256(0x00 || leaf)
    inclusion_proof: list[str]  # base64 hashes, leaf first (RFC 9162 2.1.3)


class ConsistencyHint(BaseModel):
    """A consistency proof from the checkpoint of an earlier packet of this case (the one
    signed with its disclosure record ``disclosure_seq``) to this packet's checkpoint: the
    defence holding the earlier packet can check that the log was not rewritten since."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    disclosure_seq: int
    tree_size: int
    root_hash: str  # base64
    proof: list[str]  # base64 (RFC 9162 2.1.4)


class DisclosurePacket(BaseModel):
    """``packet.json``. Version 1. Entries in seq order; the disclosure record comes last."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = FORMAT
    version: int = VERSION
    packet_id: str
    case_number: str
    created_at: str  # RFC 3339 UTC
    log: PacketLog
    checkpoint: PacketCheckpoint
    as_of_tree_size: int  # the case's entries with seq <= this are listed
    entry_count: int  # how many: the disclosure record's count
    seqs: list[int]  # which: the disclosure record's list
    disclosure_seq: int  # the seq of this packet's own disclosure record
    entries: list[PacketEntry]
    consistency: list[ConsistencyHint] = []


def fingerprint(verifier: Verifier) -> str:
    """``sha256:`` and the hex SHA-256 of the raw 32-byte Ed25519 public key."""
    return "sha256:" + hashlib.sha256(verifier.public_key).hexdigest()


def linked_ids(entries: Iterable[Mapping[str, Any]], case_number: str) -> tuple[set[str], set[str]]:
    """(warrant ids, case-session access key ids) of ``case_number`` that ``entries`` name:
    the warrants its searches ran under or that were registered for it, and the sessions
    opened for it. Their revocations are entries of the case too."""
    warrants: set[str] = set()
    sessions: set[str] = set()
    for entry in entries:
        detail = entry.get("detail") or {}
        if entry.get("case_number") == case_number and entry.get("warrant_id"):
            warrants.add(str(entry["warrant_id"]))
        if entry.get("event_type") != "admin_action" or not isinstance(detail, dict):
            continue
        warrant = detail.get("warrant")
        if isinstance(warrant, dict) and warrant.get("case_number") == case_number:
            warrants.add(str(warrant.get("id")))
        if detail.get("action") == "session.open" and detail.get("case_number") == case_number:
            sessions.add(str(detail.get("access_key_id")))
    return warrants, sessions


def belongs_to_case(
    entry: Mapping[str, Any],
    case_number: str,
    *,
    warrants: AbstractSet[str] = frozenset(),
    sessions: AbstractSet[str] = frozenset(),
) -> bool:
    """Whether ``entry`` is an entry of ``case_number`` (the rule in this module's
    docstring; ``warrants`` and ``sessions`` from ``linked_ids``). The builder selects
    with the same rule in SQL (``disclosure.case_condition``)."""
    if entry.get("case_number") == case_number:
        return True
    detail = entry.get("detail")
    if entry.get("event_type") not in _CASE_IN_DETAIL or not isinstance(detail, dict):
        return False
    if detail.get("case_number") == case_number:
        return True
    if entry.get("event_type") != "admin_action":
        return False
    warrant = detail.get("warrant")
    if isinstance(warrant, dict) and warrant.get("case_number") == case_number:
        return True
    action = detail.get("action")
    if action == "warrant.revoke":
        return detail.get("warrant_id") in warrants
    if action == "session.revoke":
        return detail.get("access_key_id") in sessions
    return False
