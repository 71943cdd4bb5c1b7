"""The embedded engine: Rego evaluated in-process by regorus (through `opa-eval`).

Known differences from OPA, which the starting policy stays clear of: regorus' `sprintf`
drops the character after each verb (so messages are built with `concat`), and there are
no `net.*` builtins.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import opa_eval
from pydantic_core import to_json

from gateway.context.activity import ActivityReads
from gateway.policy.bundle import (
    DECISION_QUERY,
    MODULE_FILE,
    READS_QUERY,
    PolicyBundle,
    PolicyLoadError,
    declared_reads,
)

# What opa-eval returns, as a JSON string, for a query whose rule is undefined.
_UNDEFINED = "<undefined>"


class EmbeddedEngine:
    """Evaluates `data.facegate.decision` on the calling (event loop) thread.

    regorus holds the GIL while it evaluates (measured on opa-eval 0.1.1: a ticker thread
    got one tick in a 1.4 s evaluation), so a worker thread bought no parallelism, only the
    hop there and back (0.38 ms a decision against regorus' 0.83 ms, issue 17). A runaway
    evaluation, which cannot be interrupted, stalls the event loop until it ends, as it did
    from a worker thread; PolicyService then refuses its late result as a timeout. A policy
    that can run that long stalls every request meanwhile: a bug to fix in the policy.
    """

    name = "embedded"

    def __init__(self, bundle: PolicyBundle) -> None:
        self.revision = bundle.revision
        self._evaluator = _compile(bundle, DECISION_QUERY)
        # opa-eval keeps one query per evaluator: a second, used once, for the reads.
        self.activity_reads: ActivityReads = declared_reads(bundle, _reads(bundle))

    def evaluate(self, document: dict[str, Any]) -> Any:
        """The decision document, or None when the policy leaves it undefined. Inline, not
        a coroutine: PolicyService sets no timer for it (see PolicyEngine).

        The text regorus parses is the one `policy_input.model_dump_json()` would give (the
        same serializer, writing a non-finite float as null as the model does; held by
        tests/policy/test_engine_input.py), made from the document PolicyService checked
        rather than from the model a second time (issue 17)."""
        text = to_json(document, inf_nan_mode="null").decode()
        result = self._evaluator.evaluate_parsed(text)
        return None if result == _UNDEFINED else result

    async def close(self) -> None:
        """Nothing to release: the evaluator is freed with the engine."""


def _reads(bundle: PolicyBundle) -> Any:
    """What the policy's `activity_reads` holds (it reads data only: evaluated on an empty
    input), or None when the policy does not define the rule."""
    evaluator = _compile(bundle, READS_QUERY, must_define=False)
    try:
        result = evaluator.evaluate_parsed("{}")
    except RuntimeError as exc:
        if "not a valid rule path" in str(exc):
            return None
        raise PolicyLoadError(
            f"policy module {bundle.module_path}: {READS_QUERY} fails on no input: {exc}"
        ) from exc
    return None if result == _UNDEFINED else result


def _compile(bundle: PolicyBundle, query: str, *, must_define: bool = True) -> opa_eval.OpaEval:
    """Compile the bundle's module text (not the file, which may have changed since)."""
    with tempfile.TemporaryDirectory(prefix="facegate-policy-") as scratch:
        scratch_module = Path(scratch) / MODULE_FILE
        scratch_module.write_text(bundle.module, encoding="utf-8")
        try:
            evaluator = opa_eval.OpaEval(
                str(scratch_module),
                data_json=json.dumps(bundle.data_document()),
                query=query,
            )
        except RuntimeError as exc:
            # Name the admin's file, not the scratch copy regorus read.
            message = str(exc).replace(str(scratch_module), str(bundle.module_path))
            raise PolicyLoadError(
                f"policy module {bundle.module_path} does not compile: {message}"
            ) from exc
        if not must_define:
            return evaluator
        # regorus accepts a module without the rule and only complains on evaluation; a
        # policy that can never decide is refused here so a reload keeps the old one.
        try:
            evaluator.evaluate_parsed("{}")
        except RuntimeError as exc:
            if "not a valid rule path" in str(exc):
                raise PolicyLoadError(
                    f"policy module {bundle.module_path} defines no rule {DECISION_QUERY}"
                ) from exc
            # Any other error on an empty input says nothing about real inputs.
    return evaluator
