"""Offline verification of an export of 1,000,000 synthetic records against a signed
checkpoint, against the floor of reading the file and SHA-256-hashing every line, in the
same run.

    .venv/bin/python bench/verify_million.py [--records 1000000]

The records are realistic decision records (about 500 bytes of RFC 8785 JSON each); they
are made from one template for speed, which gives exactly the bytes canonical_bytes would.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.append_throughput import record
from gateway.audit import chain, merkle
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.verifier import CHECKPOINT_FILE, ENTRIES_FILE, LEAF_HASHES_FILE, verify_export

SEQ_MARK = 987654321987
RID_MARK = "RIDMARK"


def write_export(directory: Path, count: int, signer: Signer) -> None:
    template = chain.canonical_bytes(
        SEQ_MARK, record(0).model_copy(update={"request_id": RID_MARK})
    )
    assert template.count(str(SEQ_MARK).encode()) == 1 and template.count(RID_MARK.encode()) == 1
    head, _, rest = template.partition(str(SEQ_MARK).encode())
    compact = merkle.CompactRange()
    hashes = bytearray()
    with (directory / ENTRIES_FILE).open("wb") as handle:
        for seq in range(1, count + 1):
            line = (head + str(seq).encode() + rest).replace(
                RID_MARK.encode(), f"req-{seq:08d}".encode()
            )
            leaf = merkle.leaf_hash(line)
            compact.append(leaf)
            hashes += leaf
            handle.write(line + b"\n")
    (directory / LEAF_HASHES_FILE).write_bytes(bytes(hashes))
    checkpoint = Checkpoint(signer.name, count, compact.root())
    (directory / CHECKPOINT_FILE).write_text(checkpoint.sign(signer))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    signer = Signer.generate("bench/facegate")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_export(directory, args.records, signer)
        size_mb = (directory / ENTRIES_FILE).stat().st_size / 1e6

        started = time.perf_counter()
        with (directory / ENTRIES_FILE).open("rb") as handle:
            for line in handle:
                hashlib.sha256(line).digest()
        floor = time.perf_counter() - started

        started = time.perf_counter()
        report = verify_export(directory, signer.verifier)
        verify = time.perf_counter() - started
        assert report.ok and report.tree_size == args.records, report
    print(f"{args.records} records, {size_mb:.0f} MB of entries")
    print(f"read + SHA-256 each line (floor): {floor:6.2f} s")
    print(f"facegate audit verify --export:   {verify:6.2f} s")
    print(f"ratio verify/floor:               {verify / floor:6.2f}x")


if __name__ == "__main__":
    main()
