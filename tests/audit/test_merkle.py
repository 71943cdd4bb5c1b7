"""The Merkle tree against the RFC 6962 reference vectors, and hypothesis on every proof."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import merkle
from gateway.audit.merkle import CompactRange, ProofError

# The Certificate Transparency reference leaves and tree heads (as published with
# transparency-dev/merkle, proof/verify_test.go): leaf i, then the root of sizes 1..8.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (leaf index, 0-based; tree size; proof)
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


class StoredTree:
    """Every perfect node of a tree, as the log stores them, built by CompactRange."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        compact = CompactRange()
        self.roots = [merkle.EMPTY_ROOT]
        for leaf in leaf_hashes:
            for level, index, value in compact.append(leaf):
                self.nodes[(level, index)] = value
            self.roots.append(compact.root())

    def node(self, node_id: tuple[int, int]) -> bytes:
        return self.nodes[node_id]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return merkle.hashes_for(merkle.inclusion_ranges(index, size), self.node)

    def consistency(self, first: int, second: int) -> list[bytes]:
        return merkle.hashes_for(merkle.consistency_ranges(first, second), self.node)


REFERENCE = StoredTree([merkle.leaf_hash(leaf) for leaf in LEAVES])


def reference_root(leaf_hashes: list[bytes]) -> bytes:
    """MTH by the RFC's recursive definition, to check the fast paths against."""
    if not leaf_hashes:
        return merkle.EMPTY_ROOT
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = 1 << ((len(leaf_hashes) - 1).bit_length() - 1)
    return merkle.node_hash(reference_root(leaf_hashes[:k]), reference_root(leaf_hashes[k:]))


def test_empty_root() -> None:
    assert merkle.root_of([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_roots(size: int) -> None:
    assert merkle.root_of(merkle.leaf_hash(leaf) for leaf in LEAVES[:size]) == ROOTS[size - 1]
    assert REFERENCE.roots[size] == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert REFERENCE.inclusion(index, size) == expected
    merkle.verify_inclusion(merkle.leaf_hash(LEAVES[index]), index, size, expected, ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(first: int, second: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert REFERENCE.consistency(first, second) == expected
    merkle.verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], expected)


def test_proof_requests_outside_the_tree_are_refused() -> None:
    with pytest.raises(ProofError, match="outside a tree of size 8"):
        merkle.inclusion_ranges(8, 8)
    with pytest.raises(ProofError, match="outside"):
        merkle.inclusion_ranges(-1, 8)
    with pytest.raises(ProofError, match="from tree size 9 to 8"):
        merkle.consistency_ranges(9, 8)


def test_trivial_consistency() -> None:
    merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, ROOTS[4], [])
    merkle.verify_consistency(5, 5, ROOTS[4], ROOTS[4], [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(5, 5, ROOTS[4], ROOTS[5], [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(1, 2, ROOTS[0], ROOTS[1], [])


leaf_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_inclusion_proof_verifies_and_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    tree = StoredTree(hashes)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = tree.roots[size]
    assert root == reference_root(hashes[:size])
    proof = tree.inclusion(index, size)
    merkle.verify_inclusion(hashes[index], index, size, proof, root)

    # One changed byte of the leaf fails.
    changed = bytearray(leaves[index] or b"\x00")
    position = data.draw(st.integers(0, len(changed) - 1), label="byte")
    changed[position] ^= data.draw(st.integers(1, 255), label="xor")
    if bytes(changed) != leaves[index]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(merkle.leaf_hash(bytes(changed)), index, size, proof, root)
    # Another position, a wrong size, or a damaged proof fail.
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
        if hashes[other] != hashes[index]:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(hashes[index], other, size, proof, root)
    # A proof claimed for a size whose path has another length fails. (Sizes with paths of
    # the same shape, e.g. index 0 in sizes 3 and 4, differ only in the root they reach.)
    if len(merkle.inclusion_ranges(index, size * 2)) != len(proof):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hashes[index], index, size * 2, proof, root)
    if proof:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hashes[index], index, size, proof[:-1], root)
        flipped = [bytearray(p) for p in proof]
        which = data.draw(st.integers(0, len(proof) - 1), label="proof element")
        flipped[which][0] ^= 1
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hashes[index], index, size, [bytes(p) for p in flipped], root)


@settings(max_examples=150, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_consistency_proof_verifies_and_rewritten_history_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    tree = StoredTree(hashes)
    second = data.draw(st.integers(1, len(leaves)), label="second")
    first = data.draw(st.integers(1, second), label="first")
    proof = tree.consistency(first, second)
    merkle.verify_consistency(first, second, tree.roots[first], tree.roots[second], proof)

    # A history where one old leaf was dropped, changed or two were swapped has another
    # root for the old size, which the proof must not reconcile with the new root.
    position = data.draw(st.integers(0, first - 1), label="position")
    rewrites = [
        hashes[:position] + hashes[position + 1 :],
        [*hashes[:position], merkle.leaf_hash(b"forged"), *hashes[position + 1 :]],
    ]
    if position + 1 < first and hashes[position] != hashes[position + 1]:
        swapped = list(hashes)
        swapped[position], swapped[position + 1] = swapped[position + 1], swapped[position]
        rewrites.append(swapped)
    for rewritten in rewrites:
        forged_root = reference_root(rewritten[:first])
        if forged_root == tree.roots[first]:
            continue  # dropping a leaf equal to its neighbour changes nothing
        with pytest.raises(ProofError):
            merkle.verify_consistency(first, second, forged_root, tree.roots[second], proof)
    if proof and first != second:
        with pytest.raises(ProofError):
            merkle.verify_consistency(
                first, second, tree.roots[first], tree.roots[second], proof[:-1]
            )


@given(st.integers(0, 2**40))
def test_compact_range_node_ids_cover_the_tree(size: int) -> None:
    ids = CompactRange.node_ids(size)
    assert sum(1 << level for level, _ in ids) == size
    if size:
        assert ids == merkle.subtree_nodes(0, size)
