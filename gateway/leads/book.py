"""Where an identification's answer becomes leads, before the answer leaves (pipeline step 8).

Contract (the outcome record's, extended): `open_leads` returns only when every lead row,
its `lead` audit record, for a search that must be authorised afterwards the authorisation
and its `opened` record, and the search's outcome record are committed, in one transaction.
If it raises, none is, and the pipeline records the outcome as withheld: a candidate nobody
can review is not handed out. That transaction is the audit log's group commit
(`AuditLog.append_unit`): other searches' units and other records may share it, so a
failure of the batch withholds every search in it, and a search's records are contiguous
in the log. A negative result that opens no authorisation has only its outcome to commit.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.log import AuditLog, Unit
from gateway.audit.records import AuditRecord
from gateway.audit.stores import Row
from gateway.db import Base
from gateway.leads.models import AuthorisationRow, LeadRow
from gateway.leads.records import authorisation_record, candidate_digest, lead_opened
from gateway.vendors.base import Candidate

PENDING = "pending"
AWAITING = "awaiting_authorisation"


@dataclass(frozen=True)
class Search:
    """What the pipeline knows of one allowed identification: its audit record's common
    fields (request id, agency, officer, key, case fields, vendor, operation, collection,
    probe digests), the decision's revision and the authorisation its decision asked for."""

    fields: dict[str, Any]
    policy_revision: str
    # The decision's `authorisation` obligation ({"basis", "hours"}), or None.
    authorisation: dict[str, Any] | None
    received_at: datetime


@dataclass
class LeadBook:
    sessions: async_sessionmaker[AsyncSession]
    audit: AuditLog

    async def open_leads(
        self,
        *,
        search: Search,
        candidates: Sequence[Candidate],
        outcome: Callable[[list[str]], AuditRecord],
    ) -> list[str]:
        """Record one lead per candidate (best first), then the search's outcome record
        (`outcome(lead ids)`), in one transaction, and return the ids. Together, so that no
        lead is on record for an answer that never left (its outcome failed), nor an
        outcome naming leads that are not. Raises AuditUnavailable (the batch failed, or its
        commit's outcome is unknown), and then the caller withholds the answer, or
        ValueError (a record that cannot be hashed, e.g. a similarity JSON cannot carry);
        either way nothing of this search is committed, unless a commit's outcome is
        unknown, when the log may hold more than was handed out, never less."""
        fields = search.fields
        if not candidates and not search.authorisation:
            # A negative result with no authorisation to open: nothing to commit with the
            # outcome but the record itself.
            await self.audit.append(outcome([]))
            return []
        # Everything joins the log's group commit as one unit: the rows are inserted and
        # the records appended in the batch's transaction, so that several searches share
        # one transaction, one sequencer hold and one signature instead of each holding
        # the sequencer for a transaction of its own while every other append waits.
        records: list[AuditRecord] = []
        authorisation = self._open_authorisation(search, records)
        leads = []
        for rank, candidate in enumerate(candidates, start=1):
            salt = secrets.token_hex(16)
            lead = LeadRow(
                id=uuid.uuid4().hex,
                created_at=search.received_at,
                search_request_id=fields["request_id"],
                rank=rank,
                agency=fields.get("agency") or "",
                officer=fields.get("officer") or "",
                purpose=fields.get("purpose"),
                case_number=fields.get("case_number"),
                offense=fields.get("offense"),
                legal_basis=fields.get("legal_basis"),
                warrant_id=fields.get("warrant_id"),
                vendor=fields.get("vendor") or "",
                operation=fields.get("operation") or "",
                collection=fields.get("collection"),
                probe_digests=list(fields.get("probe_digests") or []),
                candidate_id=candidate.id,
                candidate_salt=salt,
                candidate_digest=candidate_digest(candidate.id, salt),
                similarity=round(candidate.similarity, 4),
                status=AWAITING if authorisation is not None else PENDING,
                authorisation_id=authorisation.id if authorisation else None,
            )
            records.append(lead_opened(lead, search=fields, policy_revision=search.policy_revision))
            leads.append(lead)
        ids = [lead.id for lead in leads]
        records.append(outcome(ids))
        rows = [(_table(LeadRow), [_row(lead) for lead in leads])]
        if authorisation is not None:
            rows.insert(0, (_table(AuthorisationRow), [_row(authorisation)]))
        await self.audit.append_unit(Unit(records=records, rows=rows))
        return ids

    def _open_authorisation(
        self, search: Search, records: list[AuditRecord]
    ) -> AuthorisationRow | None:
        """The clock a search without prior authorisation opens (one per search), and its
        record, added to ``records``."""
        wanted = search.authorisation
        if not wanted:
            return None
        fields = search.fields
        row = AuthorisationRow(
            id=uuid.uuid4().hex,
            search_request_id=fields["request_id"],
            agency=fields.get("agency") or "",
            officer=fields.get("officer") or "",
            case_number=fields.get("case_number"),
            legal_basis=fields.get("legal_basis") or "",
            basis=str(wanted["basis"]),
            opened_at=search.received_at,
            deadline=search.received_at + timedelta(hours=float(wanted["hours"])),
            state=PENDING,
        )
        records.append(authorisation_record(row, state="opened", case={}, search=fields))
        return row


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _row(row: Base) -> Row:
    """Every column of an ORM row never added to a session (None where unset)."""
    return {column.name: getattr(row, column.key) for column in _table(type(row)).c}
