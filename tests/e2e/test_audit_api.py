"""Auditors verify the log through the API with nothing but the public key."""

from __future__ import annotations

import base64

from gateway.audit import merkle
from gateway.audit.checkpoint import Checkpoint, Verifier
from gateway.auth.principals import Role
from tests.e2e.conftest import Stack
from tests.e2e.test_management_api import api


def b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


async def test_checkpoint_proofs_and_entries_verify_with_the_public_key(stack: Stack) -> None:
    auditor = await stack.principal("auditor-7", Role.AUDITOR)
    officer = await stack.principal("officer-7", Role.OFFICER)

    key = api(stack, "GET", "/facegate/v1/audit/public-key", None)
    assert key.status_code == 200 and key.headers["content-type"].startswith("text/plain")
    verifier = Verifier.parse(key.text)

    first = api(stack, "GET", "/facegate/v1/audit/checkpoint", auditor)
    assert first.status_code == 200, first.text
    old = Checkpoint.open(first.text, verifier)
    for _ in range(3):
        api(stack, "GET", "/facegate/v1/audit/records", auditor)
    new = Checkpoint.open(
        api(stack, "GET", "/facegate/v1/audit/checkpoint", auditor).text, verifier
    )
    assert new.size > old.size

    consistency = api(
        stack,
        "GET",
        "/facegate/v1/audit/proofs/consistency",
        auditor,
        params={"first": old.size, "second": new.size},
    ).json()
    merkle.verify_consistency(
        old.size, new.size, old.root_hash, new.root_hash, b64(consistency["hashes"])
    )

    entries = api(
        stack,
        "GET",
        "/facegate/v1/audit/entries",
        auditor,
        params={"start": 1, "end": new.size + 1},
    ).json()["entries"]
    assert [e["seq"] for e in entries][: new.size] == list(range(1, new.size + 1))
    leaves = [merkle.leaf_hash(e["leaf"].encode()) for e in entries[: new.size]]
    assert merkle.root_of(leaves) == new.root_hash
    for seq in (1, new.size):
        proof = api(
            stack,
            "GET",
            "/facegate/v1/audit/proofs/inclusion",
            auditor,
            params={"seq": seq, "tree_size": new.size},
        ).json()
        merkle.verify_inclusion(
            leaves[seq - 1], seq - 1, new.size, b64(proof["hashes"]), new.root_hash
        )

    # Each of those reads is on the log.
    reads = api(
        stack, "GET", "/facegate/v1/audit/records", auditor, params={"event_type": "audit_read"}
    ).json()["entries"]
    actions = {r["detail"]["action"] for r in reads}
    assert {"audit.checkpoint", "audit.consistency_proof", "audit.entries"} <= actions

    # Auditors only.
    denied = api(stack, "GET", "/facegate/v1/audit/checkpoint", officer)
    assert denied.status_code == 403


async def test_bad_proof_requests_get_a_clear_error(stack: Stack) -> None:
    auditor = await stack.principal("auditor-8", Role.AUDITOR)
    for path, params, message in (
        ("/proofs/inclusion", {"seq": 10_000, "tree_size": 10_000}, "outside the log"),
        ("/proofs/inclusion", {"seq": 0, "tree_size": 1}, "seq 0 is not in a tree of size 1"),
        ("/proofs/consistency", {"first": 3, "second": 1}, "must be between"),
        ("/entries", {"start": 1, "end": 5000}, "at most 1000 entries"),
    ):
        response = api(stack, "GET", "/facegate/v1/audit" + path, auditor, params=params)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]["message"]
    response = api(
        stack, "GET", "/facegate/v1/audit/proofs/inclusion", auditor, params={"seq": "x"}
    )
    assert response.status_code == 422 and "Traceback" not in response.text
