"""Where an identification's answer becomes leads, before the answer leaves (pipeline step 8).

Contract (the outcome record's, extended): `open_leads` returns only when every lead row,
its `lead` audit record, for a search that must be authorised afterwards the authorisation
and its `opened` record, and the search's outcome record are committed, in one transaction.
If it raises, none is, and the pipeline records the outcome as withheld: a candidate nobody
can review is not handed out. A negative result that opens no authorisation has only its
outcome to commit, and commits it in the log's group commit (the same record).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord
from gateway.db import map_database_errors
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
        outcome naming leads that are not. Raises AuditUnavailable or StorageUnavailable,
        and then nothing is committed: the caller records the outcome as withheld."""
        fields = search.fields
        if not candidates and not search.authorisation:
            # A negative result with no authorisation to open: nothing to commit with the
            # outcome, so it joins the log's group commit (committed when append returns)
            # instead of a transaction of its own that holds the log's sequencer alone.
            await self.audit.append(outcome([]))
            return []
        with map_database_errors("the database failed: the leads could not be recorded"):
            async with self.sessions() as db, db.begin():
                authorisation = await self._open_authorisation(db, search)
                ids = []
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
                    db.add(lead)
                    await db.flush()
                    record = lead_opened(
                        lead, search=fields, policy_revision=search.policy_revision
                    )
                    await self.audit.append(record, db=db)
                    ids.append(lead.id)
                await self.audit.append(outcome(ids), db=db)
        return ids

    async def _open_authorisation(
        self, db: AsyncSession, search: Search
    ) -> AuthorisationRow | None:
        """The clock a search without prior authorisation opens (one per search), on record."""
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
        db.add(row)
        await db.flush()
        record = authorisation_record(row, state="opened", case={}, search=fields)
        await self.audit.append(record, db=db)
        return row
