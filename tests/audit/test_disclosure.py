"""Disclosure packets built from a log appended to directly: which entries belong to a case,
and that the offline verifier fails on every tampering the defence must be able to see."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.admin import Actor, action_record
from gateway.audit.checkpoint import Checkpoint, SignedTreeState, Signer
from gateway.audit.disclosure import build_packet, case_timeline, write_packet
from gateway.audit.log import AuditLog
from gateway.audit.packet import PACKET_FILE, DisclosurePacket
from gateway.audit.packet_verifier import PacketReport, verify_packet
from gateway.audit.reads import LogReader
from gateway.audit.records import AuditRecord, EventType
from gateway.db import session_factory
from gateway.errors import AuditUnavailable, MalformedRequest
from tests.audit.conftest import BASE_TIME, make_record

CASE, OTHER = "2026-000123", "2026-000999"
ORIGIN = "test.example/facegate-log"


def read(action: str, detail: Mapping[str, Any]) -> AuditRecord:
    return action_record(EventType.AUDIT_READ, actor=Actor.cli(), action=action, detail=detail)


def admin(action: str, minutes: int, **detail: Any) -> AuditRecord:
    record = action_record(EventType.ADMIN_ACTION, actor=Actor.cli(), action=action, detail=detail)
    return record.model_copy(update={"time": BASE_TIME + timedelta(minutes=minutes)})


def case_log() -> list[tuple[str, AuditRecord]]:
    """(label, record) in append order: entries of CASE, of OTHER, and of neither."""
    at: Callable[[int], datetime] = lambda minutes: BASE_TIME + timedelta(minutes=minutes)  # noqa: E731
    lead = {"lead_id": "L-1", "search_request_id": "req-1", "rank": 1, "similarity": 99.1}
    return [
        ("warrant", admin("warrant.create", 0, warrant={"id": "W-1", "case_number": CASE})),
        ("session", admin("session.open", 1, access_key_id="AK1", case_number=CASE)),
        ("other-session", admin("session.open", 1, access_key_id="AK2", case_number=OTHER)),
        ("decision", make_record(time=at(2), request_id="req-1", warrant_id="W-1")),
        (
            "outcome",
            make_record(
                time=at(3),
                request_id="req-1",
                event_type=EventType.OUTCOME,
                match_count=1,
                top_similarity=99.1,
                probe_digests=["ab" * 32],
                detail={"leads": ["L-1"], "negative_result": False},
            ),
        ),
        ("lead", make_record(time=at(3), event_type=EventType.LEAD, detail=lead)),
        ("other-decision", make_record(time=at(4), request_id="req-2", case_number=OTHER)),
        (
            "negative",
            make_record(
                time=at(5),
                request_id="req-3",
                event_type=EventType.OUTCOME,
                match_count=0,
                detail={"leads": [], "negative_result": True},
            ),
        ),
        (
            "refused",
            make_record(time=at(6), request_id="req-4", decision="deny", reason_codes=["x"]),
        ),
        (
            "review",
            make_record(
                time=at(7),
                event_type=EventType.LEAD_REVIEW,
                officer="reviewer-1",
                detail={
                    "lead_id": "L-1",
                    "verdict": "confirmed",
                    "rationale": "same scar <script>alert(1)</script>",
                },
            ),
        ),
        (
            "action",
            make_record(
                time=at(8),
                event_type=EventType.LEAD_ACTION,
                detail={"lead_id": "L-1", "kind": "lineup", "note": "", "lead_status": "verified"},
            ),
        ),
        (
            "authorisation",
            make_record(
                time=at(9),
                event_type=EventType.AUTHORISATION,
                detail={"authorisation_id": "A-1", "state": "opened", "basis": "exigent"},
            ),
        ),
        ("revoke-warrant", admin("warrant.revoke", 10, warrant_id="W-1", reason="done")),
        ("revoke-unrelated", admin("warrant.revoke", 10, warrant_id="W-9", reason="done")),
        ("revoke-session", admin("session.revoke", 11, access_key_id="AK1")),
        ("revoke-other-session", admin("session.revoke", 11, access_key_id="AK2")),
        ("no-case", make_record(time=at(12), case_number=None)),
        # Recorded late, with an earlier time: the timeline goes by time, not by seq.
        ("late", make_record(time=at(-5), request_id="req-0", event_type=EventType.REJECTED)),
    ]


OF_CASE = {
    "warrant",
    "session",
    "decision",
    "outcome",
    "lead",
    "negative",
    "refused",
    "review",
    "action",
    "authorisation",
    "revoke-warrant",
    "revoke-session",
    "late",
}


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
async def log(engine: AsyncEngine, signer: Signer, tmp_path: Path) -> AuditLog:
    return AuditLog(
        session_factory(engine),
        signer=signer,
        signed_state=SignedTreeState(tmp_path / "log.key.signed-tree"),
    )


async def fill(log: AuditLog) -> dict[str, int]:
    return {label: (await log.append(record)).seq for label, record in case_log()}


async def packet_of(log: AuditLog, engine: AsyncEngine, case: str = CASE) -> DisclosurePacket:
    return await build_packet(
        audit=log,
        sessions=session_factory(engine),
        case_number=case,
        read_record=read,
        now=datetime.now(UTC),
    )


async def test_a_packet_holds_exactly_the_entries_of_the_case_and_its_own_record(
    log: AuditLog, engine: AsyncEngine, signer: Signer, tmp_path: Path
) -> None:
    seqs = await fill(log)
    packet = await packet_of(log, engine)

    expected = sorted(seqs[label] for label in OF_CASE)
    assert packet.seqs == expected and packet.entry_count == len(expected)
    assert [e.seq for e in packet.entries] == [*expected, packet.disclosure_seq]
    own = packet.entries[-1].entry
    assert own["event_type"] == "audit_read"
    assert own["detail"]["action"] == "case.disclose"
    assert own["detail"]["seqs"] == expected and own["detail"]["case_number"] == CASE
    # One checkpoint, signed with the disclosure record, by the log's key.
    checkpoint = Checkpoint.open(packet.checkpoint.note, signer.verifier)
    assert checkpoint.size >= packet.disclosure_seq > max(seqs.values())

    write_packet(packet, tmp_path / "packet")
    report = verify_packet(tmp_path / "packet", signer.verifier)
    assert report.ok, report
    # The page shows what the log says, escaped: a rationale cannot run in the reader's browser.
    html = (tmp_path / "packet" / "packet.html").read_text()
    assert "same scar &lt;script&gt;" in html and "<script" not in html
    assert [r.seq for r in report.entries] == [*expected, packet.disclosure_seq]

    # The other case's packet lists the earlier disclosure of CASE nowhere, and its own.
    other = await packet_of(log, engine, OTHER)
    other_labels = {"other-session", "other-decision", "revoke-other-session"}
    assert other.seqs == sorted(seqs[label] for label in other_labels)


async def test_a_second_packet_lists_the_first_and_proves_the_log_was_not_rewritten(
    log: AuditLog, engine: AsyncEngine, signer: Signer, tmp_path: Path
) -> None:
    await fill(log)
    first = await packet_of(log, engine)
    write_packet(first, tmp_path / "first")
    await log.append(make_record(request_id="req-9"))
    second = await packet_of(log, engine)
    write_packet(second, tmp_path / "second")

    assert first.disclosure_seq in second.seqs
    assert [h.tree_size for h in second.consistency] == [first.checkpoint.tree_size]
    older = (tmp_path / "first" / "checkpoint").read_bytes()
    assert verify_packet(tmp_path / "second", signer.verifier, older=[older]).ok

    # A checkpoint of a rewritten log (same size, other root, signed by the same key).
    forged = Checkpoint(ORIGIN, first.checkpoint.tree_size, bytes(32)).sign(signer)
    report = verify_packet(tmp_path / "second", signer.verifier, older=[forged.encode()])
    assert not report.ok
    assert any("rewritten" in p for p in report.problems)


# Tampering: each edit is what someone between the log and the defence could do.


def edit(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / PACKET_FILE
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def flip(text: str) -> str:
    """``text`` with one character changed (a base64 or hex digit, or a letter)."""
    index = len(text) // 2
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def entry_labelled(document: dict[str, Any], seq: int) -> dict[str, Any]:
    (found,) = [e for e in document["entries"] if e["seq"] == seq]
    return found


def failed(report: PacketReport) -> dict[int, str]:
    return {r.seq: r.problem or "" for r in report.entries if not r.ok}


@pytest.fixture
async def built(
    log: AuditLog, engine: AsyncEngine, tmp_path: Path
) -> tuple[Path, dict[str, int], DisclosurePacket]:
    seqs = await fill(log)
    packet = await packet_of(log, engine)
    write_packet(packet, tmp_path / "pristine")
    return tmp_path / "pristine", seqs, packet


@pytest.fixture
def tampered(
    built: tuple[Path, dict[str, int], DisclosurePacket], tmp_path: Path
) -> Callable[[str], Path]:
    def copy(name: str) -> Path:
        return Path(shutil.copytree(built[0], tmp_path / name))

    return copy


async def test_one_character_of_one_field_altered_fails_that_entry(
    built: tuple[Path, dict[str, int], DisclosurePacket],
    tampered: Callable[[str], Path],
    signer: Signer,
) -> None:
    _, seqs, _ = built
    seq = seqs["negative"]
    directory = tampered("altered")
    edit(directory, lambda d: entry_labelled(d, seq)["entry"].update(officer="officer-18"))

    report = verify_packet(directory, signer.verifier)

    assert not report.ok
    assert list(failed(report)) == [seq]
    assert "altered" in failed(report)[seq]

    # Restating the leaf hash to match the altered content: the proof no longer holds.
    def restate(document: dict[str, Any]) -> None:
        item = entry_labelled(document, seq)
        item["entry"]["match_count"] = 1
        import rfc8785

        from gateway.audit import merkle

        item["leaf_hash"] = base64.b64encode(
            merkle.leaf_hash(rfc8785.dumps(item["entry"]))
        ).decode()

    directory = tampered("restated")
    edit(directory, restate)
    report = verify_packet(directory, signer.verifier)
    assert not report.ok and "inclusion proof fails" in failed(report)[seq]


async def test_an_altered_proof_fails(
    built: tuple[Path, dict[str, int], DisclosurePacket],
    tampered: Callable[[str], Path],
    signer: Signer,
) -> None:
    _, seqs, _ = built
    seq = seqs["lead"]

    def alter(document: dict[str, Any]) -> None:
        proof = entry_labelled(document, seq)["inclusion_proof"]
        proof[0] = base64.b64encode(bytes(32)).decode()

    directory = tampered("proof")
    edit(directory, alter)
    report = verify_packet(directory, signer.verifier)
    assert not report.ok and "inclusion proof fails" in failed(report)[seq]


async def test_a_forged_checkpoint_or_another_key_fails(
    built: tuple[Path, dict[str, int], DisclosurePacket],
    tampered: Callable[[str], Path],
    signer: Signer,
) -> None:
    _, _, packet = built

    # The signed root edited: the signature no longer verifies.
    directory = tampered("forged")
    text, _, signature = packet.checkpoint.note.partition("\n\n")
    origin, size, root = text.split("\n")
    forged_note = f"{origin}\n{size}\n{flip(root)}\n\n{signature}"
    edit(directory, lambda d: d["checkpoint"].update(note=forged_note))
    report = verify_packet(directory, signer.verifier)
    assert not report.ok and any("bad checkpoint" in p for p in report.problems)
    assert all(not r.ok for r in report.entries)

    # A whole packet re-signed by another key with the same name.
    impostor = Signer.generate(ORIGIN)
    directory = tampered("impostor")
    note = Checkpoint.parse_body(text + "\n").sign(impostor)
    edit(directory, lambda d: d["checkpoint"].update(note=note))
    report = verify_packet(directory, signer.verifier)
    assert not report.ok and any("not signed by the key" in p for p in report.problems)

    # The pristine packet against another key (the defence was handed the wrong key).
    report = verify_packet(built[0], impostor.verifier)
    assert not report.ok and any("bad checkpoint" in p for p in report.problems)


async def test_a_dropped_entry_is_seen_as_withheld(
    built: tuple[Path, dict[str, int], DisclosurePacket],
    tampered: Callable[[str], Path],
    signer: Signer,
) -> None:
    _, seqs, packet = built
    seq = seqs["negative"]  # the search that found nobody: what a prosecutor might drop

    def drop(document: dict[str, Any]) -> None:
        document["entries"] = [e for e in document["entries"] if e["seq"] != seq]

    directory = tampered("dropped")
    edit(directory, drop)
    report = verify_packet(directory, signer.verifier)
    assert not report.ok
    assert any(f"seq {seq} " in p and "withheld" in p for p in report.problems)

    # Dropped, and the packet's own count and list edited to match: the signed list differs.
    def drop_and_recount(document: dict[str, Any]) -> None:
        drop(document)
        document["seqs"] = [s for s in document["seqs"] if s != seq]
        document["entry_count"] -= 1

    directory = tampered("recounted")
    edit(directory, drop_and_recount)
    report = verify_packet(directory, signer.verifier)
    assert not report.ok and any("withheld" in p for p in report.problems)

    # Dropping the disclosure record too leaves nothing that says what the case holds.
    def drop_all(document: dict[str, Any]) -> None:
        drop(document)
        document["entries"] = [e for e in document["entries"] if e["seq"] != packet.disclosure_seq]

    directory = tampered("no-record")
    edit(directory, drop_all)
    report = verify_packet(directory, signer.verifier)
    assert not report.ok and any("disclosure record" in p for p in report.problems)


async def test_a_genuine_entry_of_another_case_slipped_in_fails(
    built: tuple[Path, dict[str, int], DisclosurePacket],
    tampered: Callable[[str], Path],
    signer: Signer,
    log: AuditLog,
) -> None:
    _, seqs, packet = built
    stranger = seqs["other-decision"]
    # In the log, unaltered, with a valid proof against the packet's own checkpoint.
    proof = await LogReader(log.sessions).inclusion_proof(stranger, packet.checkpoint.tree_size)
    (leaf,) = (await LogReader(log.sessions).entries(stranger, stranger + 1)).entries
    item = {
        "seq": stranger,
        "entry": json.loads(leaf.leaf),
        "leaf_hash": proof.leaf_hash,
        "inclusion_proof": proof.hashes,
    }
    directory = tampered("slipped")
    edit(directory, lambda d: d["entries"].insert(0, item))

    report = verify_packet(directory, signer.verifier)

    assert not report.ok
    assert failed(report) == {stranger: f"not an entry of case {CASE}"}
    assert any(f"seq {stranger} is in the packet but not" in p for p in report.problems)


async def test_the_timeline_is_in_time_order_a_page_at_a_time(
    log: AuditLog, engine: AsyncEngine
) -> None:
    seqs = await fill(log)
    sessions = session_factory(engine)
    pages, cursor = [], None
    while True:
        page = await case_timeline(sessions=sessions, case_number=CASE, cursor=cursor, limit=4)
        pages.append(page.entries)
        cursor = page.next_cursor
        if cursor is None:
            break
    entries = [e for page in pages for e in page]
    assert len(pages) == 4 and sorted(e.seq for e in entries) == sorted(
        seqs[label] for label in OF_CASE
    )
    assert entries[0].seq == seqs["late"]  # recorded last, happened first
    assert [(e.time, e.seq) for e in entries] == sorted((e.time, e.seq) for e in entries)
    with pytest.raises(MalformedRequest):
        await case_timeline(sessions=sessions, case_number=CASE, cursor="bm90LWEtY3Vyc29y")


async def test_a_log_altered_behind_the_triggers_is_refused_not_disclosed(
    log: AuditLog, engine: AsyncEngine
) -> None:
    seqs = await fill(log)
    seq = seqs["negative"]
    async with engine.begin() as connection:
        # The database's owner edits a row of the case, past the guards.
        if engine.dialect.name == "postgresql":
            await connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
            await connection.execute(
                sa.text(f"UPDATE audit_log SET match_count = 1 WHERE seq = {seq}")
            )
        else:
            triggers = (
                await connection.execute(
                    sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
                )
            ).all()
            for name, _ in triggers:
                await connection.execute(sa.text(f'DROP TRIGGER "{name}"'))
            await connection.execute(
                sa.text(f"UPDATE audit_log SET match_count = 1 WHERE seq = {seq}")
            )
            for _, sql in triggers:
                await connection.execute(sa.text(sql))

    with pytest.raises(AuditUnavailable, match=f"seq {seq} no longer hashes"):
        await packet_of(log, engine)


async def test_a_case_number_no_session_could_carry_is_refused_before_anything_is_recorded(
    log: AuditLog, engine: AsyncEngine
) -> None:
    before = await LogReader(log.sessions).tree_size()
    for bad in ("", "   ", "2026\n123", "x" * 101):
        with pytest.raises(MalformedRequest):
            await packet_of(log, engine, bad)
        with pytest.raises(MalformedRequest):
            await case_timeline(sessions=session_factory(engine), case_number=bad)
    assert await LogReader(log.sessions).tree_size() == before


async def test_an_edited_page_is_a_warning_and_the_packet_still_verifies(
    built: tuple[Path, dict[str, int], DisclosurePacket],
    tampered: Callable[[str], Path],
    signer: Signer,
) -> None:
    assert verify_packet(built[0], signer.verifier).warnings == []
    directory = tampered("page")
    page = directory / "packet.html"
    page.write_text(page.read_text().replace("negative result", "a result"))
    report = verify_packet(directory, signer.verifier)
    assert report.ok and len(report.warnings) == 1 and "packet.html" in report.warnings[0]
