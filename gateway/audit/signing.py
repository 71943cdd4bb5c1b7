"""What the log's writer checks before it signs a tree head (``log.py``, step 3).

The log never signs two checkpoints that disagree, nor a tree a rewritten database holds:
before extending a tree it did not just sign, the writer checks that the tree still has the
root of the latest checkpoint (signed with its key), and that it extends the last tree the
key signed, as recorded beside the key (``SignedTreeState``). Each check runs inside the
writer's transaction, holding the sequencer, and raises AuditUnavailable to refuse the
whole batch: nothing is appended rather than a fork signed.
"""

from __future__ import annotations

from gateway.audit import merkle
from gateway.audit.checkpoint import CheckpointError, SignedTreeState, Signer, open_note
from gateway.audit.handover import handover_in
from gateway.audit.stores import AppendStore
from gateway.errors import AuditUnavailable


async def check_signed_state(
    store: AppendStore, compact: merkle.CompactRange, signer: Signer, state: SignedTreeState
) -> None:
    """Raise AuditUnavailable unless the stored tree ``compact`` (the one about to be
    extended and signed by ``signer``) is a consistent extension of the last tree that
    key signed, as ``state`` records it beside the key. Every signing batch checks;
    after the writer's own batch the sizes match and it is a compare."""
    refusing = "refusing to sign: run `facegate audit verify`"
    try:
        # A read of a few dozen bytes, from the page cache: not worth a thread hop.
        recorded = state.read()
    except (CheckpointError, OSError) as exc:
        raise AuditUnavailable(
            f"the record of the last signed tree cannot be read ({exc}); {refusing}"
        ) from None
    if recorded is None:
        latest = await store.read_latest_checkpoint()
        if latest is None:
            return  # this log has never signed: its first signature starts the record
        raise AuditUnavailable(
            f"there is no record of the last tree this key signed ({state.path}), yet the"
            f" database holds a checkpoint of {latest.tree_size} entries; refusing to sign"
            " until an operator checks the log and pins a checkpoint"
            " (`facegate audit pin-head`)"
        )
    if recorded.origin != signer.name:
        raise AuditUnavailable(
            f"{state.path} records a tree of log {recorded.origin!r}, not"
            f" {signer.name!r}; {refusing}"
        )
    if recorded.size > compact.size:
        raise AuditUnavailable(
            f"this key signed a tree of {recorded.size} entries but the database holds"
            f" {compact.size}: entries were removed; {refusing}"
        )
    if recorded.size == compact.size:
        consistent = compact.root() == recorded.root_hash
    else:
        ranges = merkle.consistency_ranges(recorded.size, compact.size)
        ids = merkle.proof_node_ids(ranges)
        nodes = await store.read_nodes(ids)
        consistent = len(nodes) == len(ids)
        if consistent:
            try:
                merkle.verify_consistency(
                    recorded.size,
                    compact.size,
                    recorded.root_hash,
                    compact.root(),
                    merkle.hashes_for(ranges, nodes.__getitem__),
                )
            except merkle.ProofError:
                consistent = False
    if not consistent:
        raise AuditUnavailable(
            f"the stored tree of {compact.size} entries does not extend the tree of"
            f" {recorded.size} this key last signed: the log was rewritten; {refusing}"
        )


async def check_latest_checkpoint(
    store: AppendStore, compact: merkle.CompactRange, signer: Signer
) -> None:
    """Raise AuditUnavailable unless the stored tree ``compact`` still has the root the
    latest checkpoint signed, and that checkpoint was signed with ``signer``'s key: a
    new checkpoint must never contradict one auditors may hold."""
    latest = await store.read_latest_checkpoint()
    if latest is None:
        return
    try:
        handover = handover_in(open_note(latest.note, signer.verifier))
    except CheckpointError as exc:
        raise AuditUnavailable(
            f"the latest checkpoint (tree size {latest.tree_size}) is not one this log's key"
            f" signed ({exc}); refusing to sign another"
        ) from None
    if handover is not None and handover[2] != signer.verifier:
        # This key handed the log over (a process that has not restarted since
        # `facegate audit rotate-key`): a signature by it now would fork the chain.
        raise AuditUnavailable(
            f"this log's key was handed over to {handover[2]} at tree size"
            f" {latest.tree_size}; restart with the new key file to sign"
        )
    if latest.tree_size > compact.size:
        raise AuditUnavailable(
            f"the latest checkpoint signs {latest.tree_size} entries but the log holds"
            f" {compact.size}: entries are missing; run `facegate audit verify`"
        )
    if latest.tree_size == compact.size:
        root = compact.root()
    else:
        root = (await read_compact_range(store, latest.tree_size)).root()
    if root != latest.root_hash:
        raise AuditUnavailable(
            f"the stored tree no longer has the root the checkpoint of size"
            f" {latest.tree_size} signed; refusing to sign a fork: run `facegate audit verify`"
        )


async def read_compact_range(store: AppendStore, size: int) -> merkle.CompactRange:
    """The right edge of the stored tree of ``size`` entries, read through ``store``."""
    ids = merkle.CompactRange.node_ids(size)
    nodes = await store.read_nodes(set(ids))
    if len(nodes) != len(ids):
        # The entries say n, the tree lacks the nodes of n: building on it would sign a
        # root nobody can reproduce. Fail closed.
        raise AuditUnavailable(
            f"the audit tree does not cover the {size} entries logged: run `facegate audit verify`"
        )
    return merkle.CompactRange(size, [nodes[i] for i in ids])
