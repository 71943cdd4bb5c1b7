"""`report verify`: a true report recomputes from an export; an altered figure, an export
that is not the log the checkpoint signs, and a forged checkpoint each fail."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.fsck import LogChecker
from gateway.audit.verifier import ENTRIES_FILE, LEAF_HASHES_FILE
from gateway.reports.render import render
from gateway.reports.verify import verify_report
from tests.reports.conftest import make_log
from tests.reports.support import Log, at, lead, review, search


async def _history(log: Log) -> None:
    for month in (1, 2, 2, 3, 7, 11):
        records = search(when=at(month), offense="robbery" if month % 2 else "homicide")
        await log.add(records)
        lead_record = lead(records)
        await log.add([lead_record, review(lead_record, "confirmed", when=at(month, 2))])
    await log.add(search(when=at(4), allow=False, reasons=("warrant_unknown",)))


async def _made(
    log: Log, tmp_path: Path, template: str = "transparency", **kw: str
) -> tuple[bytes, Path]:
    await _history(log)
    report = await log.report(template, **kw)
    text = render(report, "json").encode()
    export = tmp_path / "export"
    await LogChecker(log.audit.sessions).export(export)
    return text, export


async def test_a_true_report_recomputes_from_the_export(any_log: Log, tmp_path: Path) -> None:
    text, export = await _made(any_log, tmp_path)

    check = verify_report(report_text=text, export_dir=export, verifier=any_log.signer.verifier)

    assert check.ok, check.problems
    assert check.figures_checked == 12
    assert check.recorded_at_seq is not None  # the export reaches the record of its making


async def test_every_template_and_audience_recomputes(log: Log, tmp_path: Path) -> None:
    await _history(log)
    texts = []
    for template, audiences in {
        "massachusetts": ("public", "oversight"),
        "utah": ("public", "oversight"),
        "montana": ("public", "oversight"),
        "maryland": ("public", "oversight"),
        "washington": ("public", "oversight"),
        "eu-ai-act-26-10": ("public", "oversight"),
        "transparency": ("public", "oversight"),
        "misuse-signals": ("oversight",),
    }.items():
        for audience in audiences:
            report = await log.report(template, audience=audience)
            texts.append(render(report, "json").encode())
    export = tmp_path / "export"
    await LogChecker(log.audit.sessions).export(export)
    for text in texts:
        check = verify_report(report_text=text, export_dir=export, verifier=log.signer.verifier)
        assert check.ok, (json.loads(text)["template"], check.problems)


async def test_one_altered_digit_fails_and_names_the_figure(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    document = json.loads(text)
    figure = next(f for f in document["figures"] if f["definition"]["id"] == "searches")
    assert figure["value"] == 6
    figure["value"] = 7

    check = verify_report(
        report_text=json.dumps(document).encode(), export_dir=export, verifier=log.signer.verifier
    )

    assert not check.ok
    assert [d.id for d in check.differing] == ["searches"]
    assert check.differing[0].recomputed == 6


async def test_an_altered_group_value_fails(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    document = json.loads(text)
    figure = next(f for f in document["figures"] if f["definition"]["id"] == "searches_by_month")
    figure["value"][0]["value"] += 1

    check = verify_report(
        report_text=json.dumps(document).encode(), export_dir=export, verifier=log.signer.verifier
    )

    assert [d.id for d in check.differing] == ["searches_by_month"]


async def test_an_altered_label_fails_on_the_record_of_its_making(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    document = json.loads(text)
    document["title"] = "Nothing to see here"

    check = verify_report(
        report_text=json.dumps(document).encode(), export_dir=export, verifier=log.signer.verifier
    )

    assert not check.ok
    assert check.differing == []
    assert any("digest" in p for p in check.problems)


async def test_an_export_that_does_not_match_the_checkpoint_fails(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    lines = (export / ENTRIES_FILE).read_bytes().splitlines(keepends=True)
    # One search's outcome made to say it found nothing: the figures would still add up
    # to something, but not from the entries the checkpoint signs.
    index = next(i for i, line in enumerate(lines) if b'"outcome"' in line)
    lines[index] = lines[index].replace(b'"match_count":1', b'"match_count":0')
    (export / ENTRIES_FILE).write_bytes(b"".join(lines))

    check = verify_report(report_text=text, export_dir=export, verifier=log.signer.verifier)

    assert not check.ok and not check.export_ok
    assert any("export does not match" in p for p in check.problems)


async def test_an_export_of_another_log_fails(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    # Entries and leaf hashes cut back to fewer entries than the report counted.
    lines = (export / ENTRIES_FILE).read_bytes().splitlines(keepends=True)
    (export / ENTRIES_FILE).write_bytes(b"".join(lines[:3]))
    (export / LEAF_HASHES_FILE).write_bytes((export / LEAF_HASHES_FILE).read_bytes()[: 3 * 32])

    check = verify_report(report_text=text, export_dir=export, verifier=log.signer.verifier)

    assert not check.ok and not check.export_ok


async def test_a_forged_checkpoint_fails(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    document = json.loads(text)
    stated = document["checkpoint"]
    signed = Checkpoint.parse_body(stated["note"].split("\n\n")[0] + "\n")

    # 1. The stated root changed, the note left alone.
    forged = json.loads(text)
    forged["checkpoint"]["root_hash"] = "A" * 43 + "="
    check = verify_report(
        report_text=json.dumps(forged).encode(), export_dir=export, verifier=log.signer.verifier
    )
    assert not check.ok and not check.checkpoint_ok

    # 2. A note for fewer entries, signed by a key of the same name that is not the log's.
    impostor = Signer.generate(signed.origin)
    note = Checkpoint(signed.origin, signed.size - 1, signed.root_hash).sign(impostor)
    forged = json.loads(text)
    forged["checkpoint"] |= {"note": note, "tree_size": signed.size - 1}
    check = verify_report(
        report_text=json.dumps(forged).encode(), export_dir=export, verifier=log.signer.verifier
    )
    assert not check.ok and not check.checkpoint_ok
    assert any("not signed by the log's key" in p for p in check.problems)

    # 3. The note's text edited under the log's real signature.
    forged = json.loads(text)
    forged["checkpoint"]["note"] = stated["note"].replace(
        f"\n{signed.size}\n", f"\n{signed.size - 1}\n"
    )
    forged["checkpoint"]["tree_size"] = signed.size - 1
    check = verify_report(
        report_text=json.dumps(forged).encode(), export_dir=export, verifier=log.signer.verifier
    )
    assert not check.ok and not check.checkpoint_ok


async def test_a_report_checked_with_another_key_fails(log: Log, tmp_path: Path) -> None:
    text, export = await _made(log, tmp_path)
    other = Signer.generate("test.example/facegate").verifier

    check = verify_report(report_text=text, export_dir=export, verifier=other)

    assert not check.ok and not check.checkpoint_ok


async def test_an_export_of_another_log_under_the_same_key_fails(log: Log, tmp_path: Path) -> None:
    """The same history, written again (other request ids), signed by the same key: every
    figure recomputes alike and the export verifies on its own, but it is not the tree the
    report's checkpoint signs."""
    text, _ = await _made(log, tmp_path)
    other = await make_log(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", signer=log.signer)
    try:
        await _history(other)
        await other.audit.append(other.written[0])  # the report's record, in size
        export = tmp_path / "other-export"
        await LogChecker(other.audit.sessions).export(export)
    finally:
        await other.audit.aclose()
        await other.engine.dispose()

    check = verify_report(report_text=text, export_dir=export, verifier=log.signer.verifier)

    assert not check.ok and not check.export_ok
    assert check.differing == []  # the figures alone could not tell
