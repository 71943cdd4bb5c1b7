"""The RFC 6962 / RFC 9162 Merkle tree: hashes, proofs and their verification. Pure functions.

Hashing (RFC 9162 section 2.1.1)::

    leaf hash   SHA-256(0x00 || leaf)
    node hash   SHA-256(0x01 || left || right)
    MTH({})     SHA-256("")
    MTH(D[n])   node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

A leaf of the audit log is ``chain.canonical_bytes(seq, record)``; leaf index = seq - 1.

Storage works in *perfect nodes*: ``(level, index)`` names the complete subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes. Every subtree
RFC 9162's proofs ask for starts at a multiple of a power of two at least as large as its
width, so it is the right fold of at most 64 perfect nodes (``subtree_nodes``). A log that
stores each perfect node once, when its last leaf arrives, can therefore answer any proof
for any tree size it has reached, reading O(log² n) rows.

Nothing here touches a database: ``log.py`` fetches the nodes these functions name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from gateway.errors import VerificationError

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)


class ProofError(VerificationError):
    """A proof request outside the tree, or a proof that does not verify."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The right edge of a tree of ``size`` leaves: the roots of its perfect subtrees, widest
    first (one per set bit of ``size``). Enough to append and to compute the root."""

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} edge hashes")
        self.size = size
        self._hashes = list(hashes)

    @staticmethod
    def node_ids(size: int) -> list[NodeId]:
        """The perfect nodes whose hashes make up the compact range of ``size`` leaves."""
        ids: list[NodeId] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                ids.append((level, start >> level))
                start += 1 << level
        return ids

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf *hash*; return every perfect node completed by it, leaf first."""
        index = self.size
        created = [(0, index, leaf)]
        self._hashes.append(leaf)
        level = 0
        # Each trailing 1 bit of the old size is a perfect subtree of that width waiting
        # for a right sibling of the same width: the new leaf completes them in turn.
        while index >> level & 1:
            right = self._hashes.pop()
            left = self._hashes.pop()
            merged = node_hash(left, right)
            level += 1
            created.append((level, index >> level, merged))
            self._hashes.append(merged)
        self.size += 1
        return created

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = node_hash(left, root)
        return root

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._hashes)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes, in one pass and O(log n) memory."""
    compact = CompactRange()
    for leaf in leaf_hashes:
        compact.append(leaf)
    return compact.root()


def subtree_nodes(start: int, end: int) -> list[NodeId]:
    """The perfect nodes, left to right, whose right fold is MTH(D[start:end]).

    Raises ValueError unless ``start`` is aligned to a power of two >= ``end - start``,
    which every subtree named by RFC 9162's proofs is.
    """
    width = end - start
    if width <= 0:
        raise ValueError(f"empty or reversed leaf range [{start}, {end})")
    if start % (1 << (width - 1).bit_length()):
        raise ValueError(f"leaf range [{start}, {end}) is not an RFC 9162 subtree")
    ids: list[NodeId] = []
    offset = start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            ids.append((level, offset >> level))
            offset += 1 << level
    return ids


def fold(hashes: Sequence[bytes]) -> bytes:
    """The right fold of perfect-node hashes from ``subtree_nodes``."""
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form PATH(index, D[size]) (RFC 9162 2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The subtrees whose hashes form PROOF(first, D[second]) (RFC 9162 2.1.4.1).

    Empty when ``first`` is 0 or equals ``second``.
    """
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from tree size {first} to {second}")
    if first in (0, second):
        return []
    ranges: list[Range] = []
    lo, hi, m, complete = 0, second, first, True
    # SUBPROOF(m, D[lo:hi], complete), unrolled: each step adds one sibling subtree.
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            m -= k
            lo = lo + k
            complete = False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def proof_node_ids(ranges: Iterable[Range]) -> set[NodeId]:
    ids: set[NodeId] = set()
    for start, end in ranges:
        ids.update(subtree_nodes(start, end))
    return ids


def hashes_for(ranges: Iterable[Range], node: Callable[[NodeId], bytes]) -> list[bytes]:
    """Each range's subtree hash, from the perfect nodes ``node`` looks up."""
    return [fold([node(i) for i in subtree_nodes(start, end)]) for start, end in ranges]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise ProofError unless ``proof`` puts leaf hash ``leaf`` at
    ``index`` in the tree of ``size`` leaves whose root is ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("inclusion proof hashes must be 32 bytes each")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise ProofError unless the tree of ``second`` leaves with root
    ``second_root`` extends the tree of ``first`` leaves with root ``first_root``."""
    if not 0 <= first <= second:
        raise ProofError(f"tree size {first} cannot precede tree size {second}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("consistency proof hashes must be 32 bytes each")
    if first == second:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for tree size {first}")
        return
    if first == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the old root is a node of the new
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root or sr != second_root:
        raise ProofError(f"tree size {second} is not an extension of tree size {first}")
