"""`facegate serve --refvendor`: the gateway with the reference vendor behind every protocol.

The boot code lives in refvendor/boot.py and is loaded only for this flag; the gateway
package never imports refvendor (tests/test_layers.py)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx

from gateway.auth.api_keys import issue_api_key
from gateway.auth.principals import Role, create_principal
from gateway.db import create_engine, session_factory
from gateway.migrate import upgrade_async
from gateway.serving import free_port
from tests.cli.test_cli import FACEGATE, REPO


async def auditor_key(database_url: str) -> str:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as db, db.begin():
            now = datetime.now(UTC)
            await create_principal(
                db, principal_id="auditor", name="Auditor", agency="Oversight",
                roles=(Role.AUDITOR,), now=now,
            )  # fmt: skip
            return await issue_api_key(db, principal_id="auditor", now=now)
    finally:
        await engine.dispose()


async def test_serve_refvendor_sends_every_protocol_to_the_reference_vendor(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path}/facegate.db"
    key = await auditor_key(database_url)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")},
        "FACEGATE_DATABASE_URL": database_url,
        "FACEGATE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FACEGATE_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "FACEGATE_POLICY_DIR": str(REPO / "policies"),
    }
    process = await asyncio.create_subprocess_exec(
        FACEGATE,
        *("serve", "--refvendor", "--port", str(port)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=120)).decode()
        assert line.startswith("reference vendor on http://127.0.0.1:"), line
        vendor_url = line.split()[-1]
        gateway = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(600):  # until uvicorn listens (the line comes just before)
                try:
                    health = await client.get(f"{gateway}/facegate/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert health.status_code == 200, health.text
            listed = await client.get(
                f"{gateway}/facegate/v1/vendors", headers={"Authorization": f"Bearer {key}"}
            )
            assert listed.status_code == 200, listed.text
            backends = listed.json()["vendors"]
            assert sorted(b["protocol"] for b in backends) == ["azure", "compreface", "rekognition"]
            assert {b["base_url"] for b in backends} == {vendor_url}
            # And the vendor there is the reference vendor, answering on its own route.
            seen = await client.get(f"{vendor_url}/__refvendor/requests")
            assert seen.status_code == 200, seen.text
    finally:
        process.terminate()
        await process.wait()
