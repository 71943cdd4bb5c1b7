"""What each engine is sent is what the model serializes to, byte for byte.

PolicyService dumps the input once (model_dump(mode="json")) for its strict check and hands
that document to the engine: the OPA engine posts it as it is, the embedded engine writes
it as text with pydantic-core. Either must send exactly what the model itself gives
(model_dump(mode="json") for OPA, model_dump_json() for regorus), on every input.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from policy_support import POLICY_DIR, an_identification, open_test_engine, service_for
from test_engine_agreement import policy_inputs
from test_lead_engine_agreement import lead_inputs

from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import PolicyService
from gateway.policy.lead_input import AnyPolicyInput
from gateway.policy.opa_server import OpaServerEngine


class Recorder:
    """Stands in for what an engine sends through, keeping what it is given."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.sent: list[Any] = []

    def evaluate_parsed(self, text: str) -> Any:  # regorus
        self.sent.append(text)
        return self.wrapped.evaluate_parsed(text)

    async def query_rule(self, document: Any, *args: Any) -> Any:  # the OPA client
        self.sent.append(document)
        return await self.wrapped.query_rule(document, *args)


@pytest.fixture(scope="module")
async def recorded() -> AsyncIterator[tuple[PolicyService, Recorder, PolicyService, Recorder]]:
    bundle = load_bundle(POLICY_DIR)
    embedded = await open_test_engine("embedded", bundle)
    opa = await open_test_engine("opa", bundle)
    assert isinstance(embedded, EmbeddedEngine)
    assert isinstance(opa, OpaServerEngine)
    regorus = embedded._evaluator = Recorder(embedded._evaluator)  # type: ignore[assignment]
    client = opa._client = Recorder(opa._client)  # type: ignore[assignment]
    services = service_for(embedded, POLICY_DIR), service_for(opa, POLICY_DIR)
    yield services[0], regorus, services[1], client
    for service in services:
        await service.close()


async def assert_sent_as_the_model_serializes(
    recorded: tuple[PolicyService, Recorder, PolicyService, Recorder], policy_input: AnyPolicyInput
) -> None:
    embedded, regorus, opa, client = recorded
    regorus.sent.clear()
    client.sent.clear()
    await embedded.decide(policy_input)
    await opa.decide(policy_input)
    assert regorus.sent == [policy_input.model_dump_json()]
    # aiohttp writes the document with json.dumps: the same text is the same request.
    assert [json.dumps(document) for document in client.sent] == [
        json.dumps(policy_input.model_dump(mode="json"))
    ]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy_input=policy_inputs | lead_inputs)
async def test_each_engine_is_sent_what_the_model_serializes_to(
    recorded: tuple[PolicyService, Recorder, PolicyService, Recorder],
    policy_input: AnyPolicyInput,
) -> None:
    await assert_sent_as_the_model_serializes(recorded, policy_input)


# Values no check reads, as a model_copy could leave them: a non-finite float (the model
# writes it as null), text outside ASCII, numbers at the edges of a float's text.
ODD_FLOATS = [float("inf"), float("-inf"), float("nan"), -0.0, 1e16, 1e-7, 0.1, 2.5e-308]


@pytest.mark.parametrize("value", ODD_FLOATS)
async def test_a_float_no_check_reads_is_sent_as_the_model_writes_it(
    recorded: tuple[PolicyService, Recorder, PolicyService, Recorder], value: float
) -> None:
    policy_input = an_identification()
    context = policy_input.context.model_copy(
        update={"locations": [{"lat": 52.5, "lon": 13.4, "accuracy": value}]}
    )
    await assert_sent_as_the_model_serializes(
        recorded, policy_input.model_copy(update={"context": context})
    )


@pytest.mark.parametrize(
    "text", ["Ünïcödé PD", "日本語", "emoji 🙂", 'quote " and \\ backslash', "\u2028\x00\x1f"]
)
async def test_text_no_check_reads_is_sent_as_the_model_writes_it(
    recorded: tuple[PolicyService, Recorder, PolicyService, Recorder], text: str
) -> None:
    policy_input = an_identification()
    principal = policy_input.principal.model_copy(update={"name": text, "agency": text})
    operation = policy_input.operation.model_copy(update={"name": text})
    await assert_sent_as_the_model_serializes(
        recorded, policy_input.model_copy(update={"principal": principal, "operation": operation})
    )
