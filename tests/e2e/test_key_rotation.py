"""Both key rotations against a running gateway, with the CLI an operator would use:
the master key (boto3 sessions opened before keep working, new ones derive under the new
key) and the log's signing key (a process holding the old key stops signing; restarted
with the new one it continues the tree, and an auditor who pinned the old key verifies
across). The log is verified before and after each rotation."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from PIL import Image

from gateway.app import create_app
from gateway.audit.checkpoint import Signer
from gateway.auth.principals import Role
from gateway.auth.secrets import MasterKey, read_ring
from gateway.db import create_engine
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.cli.test_cli import run_facegate
from tests.e2e.conftest import Stack

_PROBES = itertools.count()


def fresh_probe() -> bytes:
    """One face, encoded anew for each request: two identical SigV4 requests within one
    second carry one signature, and facegate accepts a signature once (auth/replay.py)."""
    encoded = io.BytesIO()
    Image.open(io.BytesIO(samples.astronaut_jpeg())).save(
        encoded, "JPEG", quality=95 - next(_PROBES) % 20
    )
    return encoded.getvalue()


async def facegate(stack: Stack, *args: str) -> tuple[int, str]:
    settings = stack.settings
    env = {
        "FACEGATE_DATABASE_URL": settings.database_url,
        "FACEGATE_MASTER_KEY_FILE": str(settings.master_key_file),
        "FACEGATE_LOG_KEY_FILE": str(settings.log_key_file),
        "FACEGATE_LOG_ORIGIN": settings.log_origin,
        "FACEGATE_POLICY_DIR": str(settings.policy_dir),
    }
    return await run_facegate(env, *args)


async def verified(stack: Stack, *extra: str) -> str:
    code, output = await facegate(stack, "audit", "verify", *extra)
    assert code == 0, output
    assert "ok: tree of" in output, output
    return output


async def key_version_of(stack: Stack, access_key_id: str) -> int:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as db:
            version = await db.scalar(
                sa.text("SELECT key_version FROM case_sessions WHERE access_key_id = :id"),
                {"id": access_key_id},
            )
    finally:
        await engine.dispose()
    assert isinstance(version, int)
    return version


async def test_master_key_rotation_keeps_live_boto3_sessions_and_derives_new_ones_anew(
    unlimited_stack: Stack,
) -> None:
    # One officer calls many times within seconds: the burst limits are out of reach here
    # (they are tested in test_patterns.py), so each call is judged on its credentials.
    stack = unlimited_stack
    await stack.warrant()
    before = await stack.session()
    old_client = stack.rekognition(before)
    assert len(old_client.detect_faces(Image={"Bytes": fresh_probe()})["FaceDetails"]) == 1
    assert await key_version_of(stack, before.access_key_id) == 1
    await verified(stack)

    code, output = await facegate(stack, "keys", "rotate-master")
    assert code == 0, output
    assert "master key version 2 is current" in output
    ring = read_ring(stack.settings.master_key_file)
    assert sorted(ring) == [1, 2]  # version 1 kept: a live session uses it
    await verified(stack)

    # The session opened before still works, on the gateway that was running all along,
    # signed (boto3's SigV4) and as a bearer key (CompreFace's x-api-key).
    assert len(old_client.detect_faces(Image={"Bytes": fresh_probe()})["FaceDetails"]) == 1
    answer = stack.compreface(before).detection.detect(samples.astronaut_jpeg(), {})
    assert len(answer["result"]) == 1, answer

    # A new session derives under the new key, and the running gateway accepts it.
    after = await stack.session()
    assert await key_version_of(stack, after.access_key_id) == 2
    assert after.secret_access_key == MasterKey(ring[2]).session_secret(after.access_key_id)
    assert after.secret_access_key != MasterKey(ring[1]).session_secret(after.access_key_id)
    new_client = stack.rekognition(after)
    assert len(new_client.detect_faces(Image={"Bytes": fresh_probe()})["FaceDetails"]) == 1
    # And the old session still works now that the gateway knows the new key as current
    # (another image: the same signed request within a second would be a replay).
    variant = samples.astronaut_variant_jpeg()
    assert len(old_client.detect_faces(Image={"Bytes": variant})["FaceDetails"]) == 1
    answer = stack.compreface(before).detection.detect(variant, {})
    assert len(answer["result"]) == 1, answer

    # The rotation is on the log, without key material.
    code, listed = await facegate(stack, "audit", "list", "--event-type", "admin_action")
    assert code == 0, listed
    rotations = [line for line in listed.splitlines() if "master_key.rotate" in line]
    assert len(rotations) == 1 and '"version":2' in rotations[0].replace(" ", "")
    assert ring[2].hex() not in listed

    # Once no live session uses version 1, it is retired and its sessions are refused.
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as db:
            await db.execute(
                sa.text("UPDATE case_sessions SET revoked_at = :now WHERE access_key_id = :id"),
                {"now": datetime.now(UTC), "id": before.access_key_id},
            )
    finally:
        await engine.dispose()
    code, output = await facegate(stack, "keys", "retire-master")
    assert code == 0, output
    assert sorted(read_ring(stack.settings.master_key_file)) == [2]
    await verified(stack)
    restarted = create_app(stack.settings)
    with BackgroundServer(restarted) as gateway:
        moved = Stack(settings=stack.settings, url=gateway.url, vendor=stack.vendor)
        with pytest.raises(ClientError):
            moved.rekognition(before).detect_faces(Image={"Bytes": fresh_probe()})
        still = moved.rekognition(after).detect_faces(Image={"Bytes": fresh_probe()})
        assert len(still["FaceDetails"]) == 1


async def test_log_key_rotation_hands_over_and_the_old_key_pinned_auditor_follows(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.warrant()
    credentials = await stack.session()
    client = stack.rekognition(credentials)
    client.detect_faces(Image={"Bytes": fresh_probe()})
    old_key = tmp_path / "old.pub"
    old_key.write_text(str(Signer.parse(stack.settings.log_key_file.read_text()).verifier))
    await verified(stack)

    code, output = await facegate(stack, "audit", "rotate-key")
    assert code == 0, output
    assert "rotated:" in output
    new_signer = Signer.parse(stack.settings.log_key_file.read_text())
    assert str(new_signer.verifier) != old_key.read_text()

    # The gateway still holding the old key refuses to sign after the handover: the
    # request is refused (fail closed), not signed by a key that was handed over.
    with pytest.raises(ClientError):
        client.detect_faces(Image={"Bytes": fresh_probe()})

    # Restarted with the new key it continues the same tree.
    with BackgroundServer(create_app(stack.settings)) as gateway:
        moved = Stack(settings=stack.settings, url=gateway.url, vendor=stack.vendor)
        faces = moved.rekognition(credentials).detect_faces(Image={"Bytes": fresh_probe()})
        assert len(faces["FaceDetails"]) == 1
        # The API publishes the new key, and the chain back to the old one.
        auditor = await moved.principal("auditor-1", Role.AUDITOR)
        async with httpx.AsyncClient(base_url=gateway.url) as api:
            published = (await api.get("/facegate/v1/audit/public-key")).text.strip()
            assert (await api.get("/facegate/v1/audit/key-chain")).status_code in (401, 403)
            chain = (
                await api.get(
                    "/facegate/v1/audit/key-chain", headers={"Authorization": f"Bearer {auditor}"}
                )
            ).json()
        assert published == str(new_signer.verifier)
        assert chain["keys"] == [old_key.read_text(), published]
        (handover,) = chain["handovers"]
        assert f"key-handover-to {published}\n" in handover["note"]

    # An auditor who pinned only the old key verifies the live log and an export.
    output = await verified(stack, "--public-key", str(old_key))
    export = tmp_path / "export"
    code, output = await facegate(stack, "audit", "export", str(export))
    assert code == 0, output
    code, output = await facegate(
        stack, "audit", "verify", "--export", str(export), "--public-key", str(old_key)
    )
    assert code == 0 and output.startswith("ok: tree of"), output
    code, output = await facegate(stack, "audit", "public-key", "--chain")
    assert code == 0
    assert output.splitlines() == [
        old_key.read_text(),
        f"{new_signer.verifier}\thanded over at tree size {output.split()[-1]}",
    ]
