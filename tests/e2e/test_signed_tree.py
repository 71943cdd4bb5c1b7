"""A gateway whose audit database was cut back by its owner refuses requests rather than sign
the rewritten log with its key."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from gateway.db import create_engine
from tests.audit.test_signed_state import as_database_owner, cut_back_to
from tests.e2e.conftest import Stack, vendor_calls


async def test_a_cut_back_log_refuses_requests_as_audit_unavailable(stack: Stack) -> None:
    client = stack.rekognition(await stack.session())
    for _ in range(3):
        client.list_collections()  # six entries: a decision and an outcome each
    engine = create_engine(stack.settings.database_url)
    try:
        await as_database_owner(engine, *cut_back_to(2))
    finally:
        await engine.dispose()

    before = vendor_calls(stack.vendor)
    with pytest.raises(ClientError) as raised:
        client.list_collections()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert raised.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert vendor_calls(stack.vendor) == before
