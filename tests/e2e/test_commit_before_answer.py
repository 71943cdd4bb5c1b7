"""A management change is committed, with its audit record, before its answer is sent.

Each test is a race the client would lose if the commit came after the answer: the client
acts on the answer at once, as a script or a second replica would. FastAPI ran a `yield`
dependency's exit after sending the response, so the commit raced the client's next
request (16 of 60 fresh credentials were unknown when used at once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from gateway.auth.principals import Role
from gateway.auth.sessions import IssuedCredentials
from refvendor import samples
from tests.e2e.conftest import CASE, Stack
from tests.e2e.test_fail_closed import gateway_with

ROUNDS = 25


def api(stack: Stack, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, stack.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs
    )


def session_body(warrant_id: str = "W-1") -> dict[str, Any]:
    return {
        "purpose": "criminal_investigation",
        "case_number": CASE,
        "offense": "robbery",
        "legal_basis": "warrant",
        "warrant_id": warrant_id,
        "ttl_seconds": 600,
    }


async def test_credentials_work_as_soon_as_they_are_issued(unlimited_stack: Stack) -> None:
    stack = unlimited_stack
    await stack.warrant("W-1")
    officer = await stack.principal("officer-1", Role.OFFICER)
    refused = []
    for _ in range(ROUNDS):
        opened = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body())
        assert opened.status_code == 201, opened.text
        client = stack.rekognition(IssuedCredentials.model_validate(opened.json()))
        try:
            client.list_collections()
        except ClientError as exc:
            refused.append(exc.response["Error"]["Code"])
    assert refused == []


async def test_a_revoked_session_is_refused_as_soon_as_the_revocation_answers(
    unlimited_stack: Stack,
) -> None:
    stack = unlimited_stack
    officer = await stack.principal("officer-1", Role.OFFICER)
    still_working = 0
    for _ in range(ROUNDS):
        credentials = await stack.session("officer-1")
        client = stack.rekognition(credentials)
        client.list_collections()  # the session works (and the client is warm)
        closed = api(stack, "DELETE", f"/facegate/v1/sessions/{credentials.access_key_id}", officer)
        assert closed.status_code == 200, closed.text
        try:
            client.list_collections()
        except ClientError:
            continue
        still_working += 1
    assert still_working == 0


async def test_a_revoked_warrant_refuses_the_next_identification_at_once(
    unlimited_stack: Stack,
) -> None:
    stack = unlimited_stack
    admin = await stack.principal("admin-1", Role.ADMIN)
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    passed = 0
    for round_ in range(10):
        warrant_id = f"W-RACE-{round_}"
        await stack.warrant(warrant_id)
        client = stack.rekognition(await stack.session(warrant_id=warrant_id))
        client.list_collections()  # warm the client: the race is the next request
        revoked = api(
            stack,
            "POST",
            f"/facegate/v1/warrants/{warrant_id}/revoke",
            admin,
            json={"reason": "quashed"},
        )
        assert revoked.status_code == 200, revoked.text
        try:
            client.search_faces_by_image(CollectionId="mugshots", Image=probe)
        except client.exceptions.AccessDeniedException:
            continue
        passed += 1
    assert passed == 0


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_commit_that_fails_is_the_answer(stack: Stack) -> None:
    """PostgreSQL checks a deferred constraint at COMMIT: here it refuses every new session,
    so the route's work succeeds and only its commit fails. The officer must hear that."""
    await stack.warrant("W-1")
    officer = await stack.principal("officer-1", Role.OFFICER)
    engine = sa.create_engine(
        stack.settings.database_url.replace("+asyncpg", "+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        connection.execute(
            sa.text(
                "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"
            )
        )
        connection.execute(
            sa.text(
                "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON case_sessions"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
            )
        )
        before = connection.scalar(sa.text("SELECT count(*) FROM audit_log"))
    engine.dispose()

    opened = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body())

    assert opened.status_code == 503, opened.text
    error = opened.json()["error"]
    assert error["code"] == "service_unavailable"
    assert "nothing was saved" in error["message"]
    assert "refused at commit" not in opened.text  # the database's words stay in the server log
    engine = sa.create_engine(stack.settings.database_url.replace("+asyncpg", "+psycopg"))
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM case_sessions")) == 0
        # The change's audit record went down with it: the log holds no session.open.
        actions = connection.scalars(
            sa.text("SELECT detail->>'action' FROM audit_log WHERE seq > :before"),
            {"before": before},
        ).all()
        connection.execute(sa.text("DROP TRIGGER refuse_at_commit ON case_sessions"))
        connection.commit()
    engine.dispose()
    assert "session.open" not in actions
    # Nothing was left half-done: with the constraint gone, the next change commits.
    again = api(stack, "POST", "/facegate/v1/sessions", officer, json=session_body())
    assert again.status_code == 201, again.text


async def test_a_database_outage_is_a_503_in_the_management_api_shape(
    stack: Stack, tmp_path: Path
) -> None:
    officer = await stack.principal("officer-1", Role.OFFICER)
    async with gateway_with(
        stack, tmp_path, database_url="postgresql+asyncpg://postgres@127.0.0.1:9/nowhere"
    ) as broken:
        for method, path in (("POST", "/facegate/v1/sessions"), ("GET", "/facegate/v1/warrants")):
            response = api(broken, method, path, officer, json=session_body())
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert "127.0.0.1:9" not in response.text
