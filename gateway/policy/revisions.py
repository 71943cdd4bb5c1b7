"""Every policy revision the gateway served, kept; and what it activated or refused, on record.

    policy_revisions   one row per revision: its files' text, so the policy behind any
                       decision (AuditRecord.policy_revision) can be read back
                       (`facegate policy show REVISION`); append-only (migration 0004)

    PolicyJournal      what PolicyService tells when it activates a revision or refuses one
    └── AuditedPolicyJournal   keeps the text in policy_revisions and records each event in
                               the audit log (event type "policy")

Audit detail of the two events:

    policy.activate   revision, replaces (the revision served before in this process, or
                      null at start), cases_passed
    policy.refuse     revision (null when the directory could not be read), serving (the
                      revision that goes on serving), error, failed_cases (names)
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import String, Text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from gateway.audit.log import AuditLog
from gateway.audit.records import AuditRecord, EventType
from gateway.db import Base, UTCDateTime
from gateway.policy.bundle import PolicyBundle, revision_of_files


class PolicyRevisionRow(Base):
    """One revision's files as {relative path: text}, JSON with sorted keys. Never changed:
    the database refuses UPDATE and DELETE (migration 0004)."""

    __tablename__ = "policy_revisions"

    revision: Mapped[str] = mapped_column(String(71), primary_key=True)  # "sha256:" + 64 hex
    files: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)


async def keep_revision(db: AsyncSession, bundle: PolicyBundle, *, now: datetime) -> None:
    """Add the bundle's files under its revision, unless that revision is kept already. The
    row is written in `db`'s transaction: it is kept when, and only if, the caller commits.

    Replicas starting on one policy keep it at once: one may find no row, then find the
    other's committed when it inserts. The insert then does nothing (ON CONFLICT DO
    NOTHING): the kept text is the same, since the revision is its hash. Without that, the
    second replica's activation failed and went unrecorded until its next poll."""
    if await db.get(PolicyRevisionRow, bundle.revision) is not None:
        return
    files = dict(bundle.files)
    if revision_of_files(files) != bundle.revision:
        # A bundle built without its files (or a bug): keep nothing rather than a text that
        # is not the revision it would be filed under.
        raise ValueError(f"the files of policy {bundle.revision} do not hash to it")
    values = {
        "revision": bundle.revision,
        "files": json.dumps(files, sort_keys=True),
        "stored_at": now,
    }
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    await db.execute(insert(PolicyRevisionRow).values(values).on_conflict_do_nothing())


async def read_revision(db: AsyncSession, revision: str) -> dict[str, str] | None:
    """The kept files of `revision` as {relative path: text}, module first, or None when
    it was never kept. Raises ValueError when the kept text does not hash to `revision`."""
    row = await db.get(PolicyRevisionRow, revision)
    if row is None:
        return None
    files: dict[str, str] = json.loads(row.files)
    if revision_of_files(files) != revision:
        raise ValueError(f"the text kept for policy {revision} does not hash to it")
    return dict(sorted(files.items(), key=lambda item: (item[0] != "facegate.rego", item[0])))


class PolicyJournal(Protocol):
    """Told by PolicyService of every revision it activates or refuses."""

    async def activated(self, bundle: PolicyBundle, *, replaces: str | None, cases: int) -> None:
        """Keep the bundle's text and record its activation. When this returns both are
        committed; if it raises, PolicyService does not activate the bundle."""
        ...

    async def refused(
        self, *, revision: str | None, serving: str, error: str, failed_cases: list[str]
    ) -> None:
        """Record that a revision was refused and `serving` goes on serving. Raises when
        the record cannot be written (the refusal stands either way)."""
        ...


class AuditedPolicyJournal:
    """PolicyJournal on the gateway's database and audit log."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], audit: AuditLog) -> None:
        self._sessions = sessions
        self._audit = audit

    async def activated(self, bundle: PolicyBundle, *, replaces: str | None, cases: int) -> None:
        now = datetime.now(UTC)
        record = _record(
            now,
            "policy.activate",
            bundle.revision,
            replaces=replaces,
            cases_passed=cases,
        )
        # The text and the record commit together: a revision is never on record as
        # activated without its text kept.
        async with self._sessions() as db, db.begin():
            await keep_revision(db, bundle, now=now)
            await self._audit.append(record, db=db)

    async def refused(
        self, *, revision: str | None, serving: str, error: str, failed_cases: list[str]
    ) -> None:
        await self._audit.append(
            _record(
                datetime.now(UTC),
                "policy.refuse",
                revision,
                serving=serving,
                error=error,
                failed_cases=failed_cases,
            )
        )


def _record(now: datetime, action: str, revision: str | None, **detail: Any) -> AuditRecord:
    return AuditRecord(
        time=now,
        request_id=uuid.uuid4().hex,
        event_type=EventType.POLICY,
        decision="allow" if action == "policy.activate" else "deny",
        policy_revision=revision,
        detail={"action": action, "revision": revision, **detail},
    )
