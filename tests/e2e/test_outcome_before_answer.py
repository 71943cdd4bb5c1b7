"""The vendor's answer reaches the client only once its outcome record is committed: a match
nobody can account for is not handed out (pipeline step 8)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from gateway.db import create_engine
from refvendor import samples
from tests.e2e.conftest import Stack, vendor_calls

# The database refuses outcome records, and only those: the decision is recorded, the
# request is forwarded, the vendor answers with matches, and then the log cannot be written.
REFUSE_OUTCOMES = {
    "sqlite": (
        "CREATE TRIGGER refuse_outcomes BEFORE INSERT ON audit_log"
        " WHEN NEW.event_type = 'outcome' BEGIN SELECT RAISE(ABORT, 'no outcomes'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION refuse_outcomes() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'no outcomes'; END $$",
        "CREATE TRIGGER refuse_outcomes BEFORE INSERT ON audit_log FOR EACH ROW"
        " WHEN (NEW.event_type = 'outcome') EXECUTE FUNCTION refuse_outcomes()",
    ),
}


async def event_types(stack: Stack) -> list[str]:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT event_type FROM audit_log ORDER BY seq")
            )
            return [row.event_type for row in rows]
    finally:
        await engine.dispose()


async def test_no_match_is_answered_without_its_outcome_record(stack: Stack) -> None:
    await stack.warrant("W-1")
    client = stack.rekognition(await stack.session())
    probe = {"Bytes": samples.astronaut_variant_jpeg()}
    assert client.search_faces_by_image(CollectionId="mugshots", Image=probe)["FaceMatches"]

    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as connection:
            for statement in REFUSE_OUTCOMES[engine.dialect.name]:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()
    before, recorded = vendor_calls(stack.vendor), await event_types(stack)

    with pytest.raises(ClientError) as raised:
        # Not the first request again: one signed request is forwarded once (replay cache).
        client.search_faces_by_image(CollectionId="mugshots", Image=probe, MaxFaces=2)

    assert vendor_calls(stack.vendor) == before + 1  # the vendor did answer
    assert await event_types(stack) == [*recorded, "decision"]  # its outcome is not on record
    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert response["Error"]["Code"] == "ServiceUnavailableException"
    assert "FaceMatches" not in response
