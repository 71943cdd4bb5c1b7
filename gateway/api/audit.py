"""Auditors read the audit log: records, checkpoints, proofs, entries. Every read is itself
recorded, before it is served. The public key is public: anyone may check a checkpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from gateway.api.deps import Auditor, ServicesDep, record_read
from gateway.audit.checkpoint import CheckpointError
from gateway.audit.handover import KeyChain
from gateway.audit.schemas import (
    AuditPage,
    AuditQuery,
    ConsistencyProof,
    HandoverRead,
    InclusionProof,
    KeyChainRead,
    LogEntryPage,
    VerifyReport,
)
from gateway.errors import AuditUnavailable

router = APIRouter(prefix="/facegate/v1/audit", tags=["audit"])


@router.get("/records")
async def list_records(
    filters: Annotated[AuditQuery, Query()],
    auditor: Auditor,
    services: ServicesDep,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    # Recorded before the read is served: an auditor's look at the log is on the log.
    await record_read(
        services,
        request,
        by=auditor,
        action="audit.list",
        filters=filters.model_dump(mode="json", exclude_none=True),
        cursor=cursor,
    )
    return await services.audit_records.query(filters, cursor=cursor, limit=limit)


@router.get("/verify")
async def verify(auditor: Auditor, services: ServicesDep, request: Request) -> VerifyReport:
    await record_read(
        services,
        request,
        by=auditor,
        action="audit.verify",
    )
    return await services.audit_checker.verify()


NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"


@router.get("/public-key", response_class=PlainTextResponse)
async def public_key(services: ServicesDep) -> PlainTextResponse:
    """The log's verifier key, ``<origin>+<key id>+<base64 key>`` (Go note format)."""
    signer = services.audit.signer
    if signer is None:
        raise AuditUnavailable("this gateway has no log signing key")
    return PlainTextResponse(str(signer.verifier) + "\n", media_type=NOTE_MEDIA_TYPE)


@router.get("/key-chain")
async def key_chain(auditor: Auditor, services: ServicesDep, request: Request) -> KeyChainRead:
    """Every key the log has signed with, oldest first, and the handover checkpoints that
    link them (``gateway.audit.handover``). An auditor checks the chain from the key they
    pinned (``KeyChain.build``), not by trusting this answer. For auditors, and recorded,
    unlike the public key: finding the handovers reads every checkpoint."""
    await record_read(services, request, by=auditor, action="audit.key_chain")
    signer = services.audit.signer
    if signer is None:
        raise AuditUnavailable("this gateway has no log signing key")
    notes = await services.audit_checker.handovers()
    try:
        chain = KeyChain.build(signer.verifier, notes)
    except CheckpointError as exc:
        raise AuditUnavailable(f"the log's chain of keys does not verify: {exc}") from None
    return KeyChainRead(
        keys=[str(key) for key in chain.keys],
        handovers=[HandoverRead(tree_size=h.checkpoint.size, note=h.note) for h in chain.handovers],
    )


@router.get("/checkpoint", response_class=PlainTextResponse)
async def checkpoint(
    auditor: Auditor, services: ServicesDep, request: Request
) -> PlainTextResponse:
    """The latest signed checkpoint, as a C2SP signed note. It covers this read's record."""
    await record_read(
        services,
        request,
        by=auditor,
        action="audit.checkpoint",
    )
    latest = await services.audit_reader.latest_checkpoint()
    if latest is None:
        raise AuditUnavailable("the log has signed no checkpoint yet")
    return PlainTextResponse(latest.note, media_type=NOTE_MEDIA_TYPE)


@router.get("/proofs/inclusion")
async def inclusion_proof(
    auditor: Auditor,
    services: ServicesDep,
    request: Request,
    seq: Annotated[int, Query(description="the record, 1-based")],
    tree_size: Annotated[int, Query(description="the size of the tree to prove it in")],
) -> InclusionProof:
    await record_read(
        services,
        request,
        by=auditor,
        action="audit.inclusion_proof",
        seq=seq,
        tree_size=tree_size,
    )
    return await services.audit_reader.inclusion_proof(seq, tree_size)


@router.get("/proofs/consistency")
async def consistency_proof(
    auditor: Auditor,
    services: ServicesDep,
    request: Request,
    first: Annotated[int, Query(description="the older tree size")],
    second: Annotated[int, Query(description="the newer tree size")],
) -> ConsistencyProof:
    await record_read(
        services,
        request,
        by=auditor,
        action="audit.consistency_proof",
        first=first,
        second=second,
    )
    return await services.audit_reader.consistency_proof(first, second)


@router.get("/entries")
async def entries(
    auditor: Auditor,
    services: ServicesDep,
    request: Request,
    start: Annotated[int, Query(description="first seq, inclusive")],
    end: Annotated[int, Query(description="last seq, exclusive; at most 1000 entries")],
) -> LogEntryPage:
    """Entries as the exact leaf bytes the tree hashes (RFC 8785 JSON)."""
    await record_read(
        services,
        request,
        by=auditor,
        action="audit.entries",
        start=start,
        end=end,
    )
    return await services.audit_reader.entries(start, end)
