"""The embedded engine: Rego evaluated in-process by regorus (through `opa-eval`).

Known differences from OPA, which the starting policy stays clear of: regorus' `sprintf`
drops the character after each verb (so messages are built with `concat`), and there are
no `net.*` builtins.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import opa_eval

from gateway.policy.bundle import DECISION_QUERY, MODULE_FILE, PolicyBundle, PolicyLoadError
from gateway.policy.lead_input import AnyPolicyInput

# What opa-eval returns, as a JSON string, for a query whose rule is undefined.
_UNDEFINED = "<undefined>"
# One evaluator may be shared by threads (checked on opa-eval 0.1.1). Evaluation holds the
# GIL, though (measured on 0.1.1: a ticker thread got one tick in a 1.4 s evaluation), so
# the threads keep evaluations in order rather than running them in parallel.
_WORKERS = 4


class EmbeddedEngine:
    """Evaluates `data.facegate.decision` in worker threads of its own.

    The threads are the engine's own so that a runaway evaluation, which cannot be
    interrupted, occupies one of them rather than the shared default executor. Because
    regorus holds the GIL while it evaluates, such an evaluation still stalls the event
    loop until it ends; PolicyService then refuses its late result as a timeout. A policy
    that can run that long stalls every request meanwhile: a bug to fix in the policy.
    """

    name = "embedded"

    def __init__(self, bundle: PolicyBundle) -> None:
        self.revision = bundle.revision
        self._evaluator = _compile(bundle)
        self._executor = ThreadPoolExecutor(
            max_workers=_WORKERS, thread_name_prefix="facegate-policy"
        )

    async def evaluate(self, policy_input: AnyPolicyInput) -> Any:
        """The decision document, or None when the policy leaves it undefined."""
        input_json = policy_input.model_dump_json()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor, self._evaluator.evaluate_parsed, input_json
        )
        return None if result == _UNDEFINED else result

    async def close(self) -> None:
        # Do not wait: a runaway evaluation may still hold a thread, and it must not hold
        # up a reload. Its result is discarded.
        self._executor.shutdown(wait=False, cancel_futures=True)


def _compile(bundle: PolicyBundle) -> opa_eval.OpaEval:
    """Compile the bundle's module text (not the file, which may have changed since)."""
    with tempfile.TemporaryDirectory(prefix="facegate-policy-") as scratch:
        scratch_module = Path(scratch) / MODULE_FILE
        scratch_module.write_text(bundle.module, encoding="utf-8")
        try:
            evaluator = opa_eval.OpaEval(
                str(scratch_module),
                data_json=json.dumps(bundle.data_document()),
                query=DECISION_QUERY,
            )
        except RuntimeError as exc:
            # Name the admin's file, not the scratch copy regorus read.
            message = str(exc).replace(str(scratch_module), str(bundle.module_path))
            raise PolicyLoadError(
                f"policy module {bundle.module_path} does not compile: {message}"
            ) from exc
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
