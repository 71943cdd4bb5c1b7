"""A disclosure packet as one readable HTML page, for a person who never saw facegate: the
case, a timeline, each search (what was asked, decided and found), the leads with their
reviews and actions, the authorisations, and how to verify. Self-contained: inline style,
no script, nothing fetched. Every value from the log is escaped."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any, Final

from gateway.audit.packet import DisclosurePacket, PacketEntry

_STYLE: Final = """
body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#111}
h1{font-size:1.6rem}h2{border-bottom:1px solid #999;margin-top:2.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}code,pre{font:12px/1.3 ui-monospace,monospace;word-break:break-all}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5rem}
.deny{color:#a00;font-weight:600}.allow{color:#060;font-weight:600}
.box{border:1px solid #999;padding:.6rem 1rem;background:#fafafa}
section.search{border-left:4px solid #999;padding-left:1rem;margin:1rem 0}
"""

_EVENTS: Final = {
    "decision": "Policy decision on a face-recognition request",
    "outcome": "What the vendor answered",
    "rejected": "Request refused before a decision",
    "auth_failure": "Authentication refused",
    "admin_action": "Administrative action",
    "audit_read": "Audit read of the log",
    "policy": "Policy change",
    "lead": "Investigative lead produced",
    "lead_review": "Human review of a lead",
    "lead_action": "Action taken on a lead",
    "authorisation": "After-the-fact authorisation",
}
_SEARCH_EVENTS: Final = ("decision", "outcome", "rejected", "auth_failure")


def render(packet: DisclosurePacket) -> str:
    """The page for ``packet``."""
    entries = [e.entry for e in packet.entries]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Disclosure: case {_e(packet.case_number)}</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>Face-recognition disclosure for case {_e(packet.case_number)}</h1>",
        _introduction(packet),
        _counts(entries),
        _timeline(packet.entries),
        _searches(entries),
        _leads(entries),
        _authorisations(entries),
        _verification(packet),
        _appendix(packet.entries),
        "</body></html>",
    ]
    return "\n".join(parts)


def _e(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "&mdash;"
    if isinstance(value, list | tuple):
        return ", ".join(_e(v) for v in value)
    if isinstance(value, dict):
        return f"<code>{escape(json.dumps(value, sort_keys=True))}</code>"
    return escape(str(value))


def _rows(pairs: Iterable[tuple[str, Any]]) -> str:
    return (
        "<table>" + "".join(f"<tr><th>{k}</th><td>{_e(v)}</td></tr>" for k, v in pairs) + "</table>"
    )


def _introduction(packet: DisclosurePacket) -> str:
    return f"""<div class=box>
<p>This packet lists <b>every entry that facegate's audit log holds for case
{_e(packet.case_number)}</b> up to log position {packet.as_of_tree_size}: each face-recognition
search made in the case, what the policy decided, what the vendor found (including searches
that found nobody, and candidates other than the person charged), the investigative leads it
produced, each human review and action on them, and any after-the-fact authorisation.
facegate is a gateway that sits between police applications and face-recognition vendors; it
decides each request by a written policy and records it, before anything is forwarded, in an
append-only log whose state is signed (a "checkpoint").</p>
<p>A face-recognition match is an investigative lead, not an identification.
No images and no face templates are in this packet: images appear only as SHA-256 digests.</p>
{
        _rows(
            [
                ("Case", packet.case_number),
                ("Packet id", packet.packet_id),
                ("Generated (UTC)", packet.created_at),
                (
                    "Entries of the case",
                    f"{packet.entry_count} (log positions {_positions(packet.seqs)})",
                ),
                ("This disclosure, recorded at log position", packet.disclosure_seq),
                ("Log", packet.log.origin),
                ("Log public key fingerprint", packet.log.public_key_fingerprint),
                (
                    "Signed checkpoint",
                    f"tree of {packet.checkpoint.tree_size} entries,"
                    f" root {packet.checkpoint.root_hash}",
                ),
            ]
        )
    }</div>"""


def _counts(entries: list[dict[str, Any]]) -> str:
    kinds: dict[str, int] = defaultdict(int)
    for entry in entries:
        kinds[str(entry.get("event_type"))] += 1
    decisions = [e for e in entries if e.get("event_type") == "decision"]
    refused = sum(1 for e in decisions if e.get("decision") != "allow")
    negative = sum(1 for e in entries if _negative(e))
    return "<h2>In numbers</h2>" + _rows(
        [
            ("Searches decided", f"{len(decisions)} ({refused} refused)"),
            ("Searches that found nobody", negative),
            ("Requests refused before a decision", kinds["rejected"] + kinds["auth_failure"]),
            ("Leads", kinds["lead"]),
            ("Lead reviews", kinds["lead_review"]),
            ("Actions on leads", kinds["lead_action"]),
            ("Authorisation entries", kinds["authorisation"]),
            ("Administrative actions and audit reads", kinds["admin_action"] + kinds["audit_read"]),
        ]
    )


def _negative(entry: Mapping[str, Any]) -> bool:
    detail = entry.get("detail") or {}
    if entry.get("event_type") != "outcome":
        return False
    if isinstance(detail, dict) and detail.get("negative_result") is True:
        return True
    return entry.get("operation_kind") == "identify" and entry.get("match_count") == 0


def _summary(entry: Mapping[str, Any]) -> str:
    kind = entry.get("event_type")
    detail = entry.get("detail") if isinstance(entry.get("detail"), dict) else {}
    assert isinstance(detail, dict)
    decision = entry.get("decision")
    if kind == "decision":
        text = f"{entry.get('operation')} on {entry.get('collection') or 'no collection'}"
        verdict = f"<span class={_e(decision)}>{_e(decision)}</span>"
        return f"{_e(text)}: {verdict} {_e(entry.get('reason_codes'))}"
    if kind == "outcome":
        if _negative(entry):
            return "<b>negative result: no candidate</b>"
        found = (
            f"{entry.get('match_count')} candidate(s), top similarity {entry.get('top_similarity')}"
        )
        return _e(found) + (f"; leads {_e(detail.get('leads'))}" if detail.get("leads") else "")
    if kind == "lead":
        return _e(
            f"lead {detail.get('lead_id')}, rank {detail.get('rank')},"
            f" similarity {detail.get('similarity')}"
        )
    refused = f" ({_e(entry.get('reason_codes'))})" if decision == "deny" else ""
    if kind == "lead_review":
        change = f"{_v(detail.get('status_before'))} -> {_v(detail.get('status_after'))}"
        verdict = f"{detail.get('verdict')} on lead {detail.get('lead_id')}"
        if decision == "deny":
            return f"<span class=deny>review refused</span>: {_e(verdict)}{refused}"
        return _e(f"{verdict}: lead {change}")
    if kind == "lead_action":
        action = f"{detail.get('kind')} on lead {detail.get('lead_id')}"
        if decision == "deny":
            return f"<span class=deny>action refused</span>: {_e(action)}{refused}"
        return _e(f"{action} (lead {_v(detail.get('lead_status'))})")
    if kind == "authorisation":
        return _e(
            f"{detail.get('state')} ({_v(detail.get('basis'))}),"
            f" deadline {_v(detail.get('deadline'))}"
        )
    if kind in ("rejected", "auth_failure"):
        return f"<span class=deny>refused</span> {_e(entry.get('reason_codes'))}"
    return _e(detail.get("action"))


def _v(value: Any) -> str:
    return "-" if value is None else str(value)


def _positions(seqs: list[int]) -> str:
    return ", ".join(map(str, seqs)) or "none"


def _said(entry: Mapping[str, Any]) -> Any:
    detail = entry.get("detail")
    if not isinstance(detail, dict):
        return None
    return detail.get("rationale") or detail.get("note")


def _timeline(items: list[PacketEntry]) -> str:
    ordered = sorted(items, key=lambda i: (str(i.entry.get("time")), i.seq))
    rows = "".join(
        f"<tr><td>{_e(i.entry.get('time'))}</td><td>{i.seq}</td>"
        f"<td>{_e(_EVENTS.get(str(i.entry.get('event_type')), i.entry.get('event_type')))}</td>"
        f"<td>{_e(i.entry.get('officer'))}<br>{_e(i.entry.get('agency'))}</td>"
        f"<td>{_summary(i.entry)}</td></tr>"
        for i in ordered
    )
    return (
        "<h2>Timeline</h2><p>Every entry, oldest first. Log position is the entry's place in"
        " the audit log.</p><table><tr><th>Time (UTC)</th><th>Log position</th><th>What</th>"
        f"<th>Who</th><th>Summary</th></tr>{rows}</table>"
    )


def _searches(entries: list[dict[str, Any]]) -> str:
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if entry.get("event_type") in _SEARCH_EVENTS:
            by_request[str(entry.get("request_id"))].append(entry)
    produced: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        detail = entry.get("detail")
        if entry.get("event_type") == "lead" and isinstance(detail, dict):
            produced[str(detail.get("search_request_id"))].append(str(detail.get("lead_id")))
    sections = []
    for number, (request_id, group) in enumerate(by_request.items(), start=1):
        first = group[0]
        asked = [
            ("Time", first.get("time")),
            ("Officer", f"{first.get('officer') or '-'} ({first.get('agency') or '-'})"),
            ("Request", f"{first.get('operation')} ({first.get('operation_kind')})"),
            ("Vendor", first.get("vendor")),
            ("Database searched", first.get("collection")),
            ("Purpose / offence", f"{first.get('purpose')} / {first.get('offense')}"),
            ("Legal basis / warrant", f"{first.get('legal_basis')} / {first.get('warrant_id')}"),
            ("Probe image digests", first.get("probe_digests")),
            ("Request id", request_id),
        ]
        parts = [f"<section class=search><h3>Search {number}</h3><h4>Asked</h4>{_rows(asked)}"]
        for entry in group:
            kind = entry.get("event_type")
            if kind == "decision":
                parts.append(
                    "<h4>Decided</h4>"
                    + _rows(
                        [
                            ("Decision", entry.get("decision")),
                            ("Reasons", entry.get("reason_codes")),
                            ("Conditions imposed", entry.get("obligations")),
                            ("Policy revision", entry.get("policy_revision")),
                        ]
                    )
                )
            elif kind == "outcome":
                detail = entry.get("detail") or {}
                parts.append(
                    "<h4>Found</h4>"
                    + _rows(
                        [
                            (
                                "Result",
                                "no candidate (negative result)"
                                if _negative(entry)
                                else f"{entry.get('match_count')} candidate(s)",
                            ),
                            ("Best similarity", entry.get("top_similarity")),
                            ("Leads", detail.get("leads") if isinstance(detail, dict) else None),
                            ("Vendor status", entry.get("upstream_status")),
                            ("Errors / refusals", entry.get("reason_codes")),
                        ]
                    )
                )
            else:
                parts.append(f"<h4>Refused</h4>{_rows([('Reasons', entry.get('reason_codes'))])}")
        if produced.get(request_id):
            parts.append(f"<h4>Leads produced</h4>{_rows([('Leads', produced[request_id])])}")
        parts.append("</section>")
        sections.append("".join(parts))
    return "<h2>Searches</h2>" + ("".join(sections) or "<p>No search in this case.</p>")


def _leads(entries: list[dict[str, Any]]) -> str:
    follow: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        detail = entry.get("detail")
        if entry.get("event_type") in ("lead_review", "lead_action") and isinstance(detail, dict):
            follow[str(detail.get("lead_id"))].append(entry)
    sections = []
    for lead in (e for e in entries if e.get("event_type") == "lead"):
        detail = lead.get("detail") if isinstance(lead.get("detail"), dict) else {}
        assert isinstance(detail, dict)
        lead_id = str(detail.get("lead_id"))
        rows = "".join(
            f"<tr><td>{_e(f.get('time'))}</td><td>{_e(f.get('officer'))}</td>"
            f"<td>{_summary(f)}</td><td>{_e(_said(f))}</td></tr>"
            for f in follow.get(lead_id, [])
        )
        sections.append(
            f"<h3>Lead {_e(lead_id)}</h3>"
            + _rows(
                [
                    ("From search (request id)", detail.get("search_request_id")),
                    ("Rank / similarity", f"{detail.get('rank')} / {detail.get('similarity')}"),
                    ("Candidate (salted digest only)", detail.get("candidate_digest")),
                    ("Status when produced", detail.get("status")),
                ]
            )
            + "<table><tr><th>Time</th><th>By</th><th>Review or action</th>"
            + "<th>Rationale / note</th></tr>"
            + (rows or "<tr><td colspan=4>No review or action recorded.</td></tr>")
            + "</table>"
        )
    return "<h2>Leads, reviews and actions</h2>" + (
        "".join(sections) or "<p>No lead in this case.</p>"
    )


def _authorisations(entries: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_e(e.get('time'))}</td><td>{_e(e.get('officer'))}</td><td>{_summary(e)}</td>"
        f"<td>{_e(e.get('detail'))}</td></tr>"
        for e in entries
        if e.get("event_type") == "authorisation"
    )
    if not rows:
        return "<h2>Authorisations</h2><p>No after-the-fact authorisation in this case.</p>"
    return (
        "<h2>Authorisations</h2><table><tr><th>Time</th><th>By</th><th>State</th>"
        f"<th>Detail</th></tr>{rows}</table>"
    )


def _verification(packet: DisclosurePacket) -> str:
    return f"""<h2>How to verify this packet</h2>
<p>With facegate installed, and the log's public key obtained from the log's operator or an
independent witness (not from this packet):</p>
<pre>facegate audit verify-packet PACKET_DIR --public-key log.pub</pre>
<p>It needs no database and no network. By hand, with any RFC 8785 (JSON canonicalisation)
library and SHA-256, for each entry in <code>packet.json</code>:</p>
<ol><li>the leaf is the RFC 8785 encoding of <code>entry</code>; its hash is
SHA-256(0x00 || leaf) (RFC 6962);</li>
<li>the inclusion proof (RFC 9162 section 2.1.3) takes that hash, at index seq &minus; 1, to the
root of the tree of {packet.checkpoint.tree_size} entries;</li>
<li>the checkpoint (file <code>checkpoint</code>, a C2SP signed note) signs that root with the
log's Ed25519 key, fingerprint {_e(packet.log.public_key_fingerprint)}
(SHA-256 of the raw key).</li></ol>
<p><b>What this proves:</b> each entry here is, unaltered, in the log that the key signed; and
the disclosure record at log position {packet.disclosure_seq}, itself in the signed log, lists
the entries of the case, so an entry removed from or added to this packet is detected.
<b>What it does not prove:</b> that the log holds nothing else about the case under another
case number, or that the selection the log made was complete; that can only be checked
against the log itself (an export of the whole log, or a fresh packet ordered from it).
An earlier packet's checkpoint can be checked against this one with
<code>--older-checkpoint</code>, using the consistency proofs included.</p>"""


def _appendix(items: list[PacketEntry]) -> str:
    blocks = "".join(
        f"<details><summary>Log position {i.seq}: {_e(i.entry.get('event_type'))}</summary>"
        f"<pre>{escape(json.dumps(i.entry, indent=2, sort_keys=True))}</pre></details>"
        for i in items
    )
    return f"<h2>Appendix: every entry as recorded</h2>{blocks}"
