"""Prometheus metrics: every facegate_* series, defined once, and the /metrics exposition.

Label values come from bounded sets only, so that no label carries what identifies a case
or a person: `vendor` is a registered protocol, `operation` one of that vendor's native
operation names (`VendorDescriptor.operation_names`; anything else is "other", nothing
parsed is "none"), `decision` allow / deny / error, `reason` a code of the error tree or
of the policy (`known_reasons`; anything else is "other"), `step` one of `STEPS`. A case
number, officer, agency, free text or request id is never a label value: those are in the
audit record the request id leads to.

Several worker processes (`facegate serve --workers N`) use prometheus_client's
multiprocess mode: PROMETHEUS_MULTIPROC_DIR names a directory the workers write to and
/metrics, served by any worker, sums them. Without it each process serves its own.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.errors import FacegateError
from gateway.policy.codes import reason_codes

STEPS: Final = (
    "authenticate",
    "parse",
    "gather",
    "decide",
    "record_decision",
    "forward",
    "filter",
    "record_outcome",
)
DECISIONS: Final = frozenset({"allow", "deny", "error"})
OTHER: Final = "other"
NONE: Final = "none"

# Seconds: a step is well under a millisecond (parse) to the vendor's seconds (forward).
_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS: Final = Counter(
    "facegate_requests_total",
    "Vendor requests answered, by how they ended (the last audit record of each).",
    ["vendor", "operation", "decision"],
)
REQUEST_REASONS: Final = Counter(
    "facegate_request_reasons_total",
    "Reason codes of the requests answered: one per code on each request's records.",
    ["vendor", "operation", "decision", "reason"],
)
REQUEST_SECONDS: Final = Histogram(
    "facegate_request_duration_seconds",
    "Time from reading a vendor request's headers to its answer.",
    ["vendor"],
    buckets=_LATENCY_BUCKETS,
)
STEP_SECONDS: Final = Histogram(
    "facegate_pipeline_step_duration_seconds",
    "Time spent in each pipeline step.",
    ["vendor", "step"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_RESPONSES: Final = Counter(
    "facegate_upstream_responses_total",
    "Vendor answers by HTTP status code.",
    ["vendor", "status_code"],
)
UPSTREAM_FAILURES: Final = Counter(
    "facegate_upstream_failures_total",
    "Forwards that got no answer from the vendor (unreachable, timed out, not HTTP).",
    ["vendor"],
)
AUDIT_BATCH_RECORDS: Final = Histogram(
    "facegate_audit_batch_records",
    "Records per group commit of the audit log.",
    buckets=_BATCH_BUCKETS,
)
AUDIT_QUEUE_RECORDS: Final = Gauge(
    "facegate_audit_queue_records",
    "Appends waiting for the audit log's next group commit.",
    multiprocess_mode="livesum",
)
AUDIT_COMMIT_SECONDS: Final = Histogram(
    "facegate_audit_commit_duration_seconds",
    "Time to write, sign and commit one batch of the audit log.",
    buckets=_LATENCY_BUCKETS,
)
AUDIT_COMMIT_FAILURES: Final = Counter(
    "facegate_audit_commit_failures_total",
    "Audit log batches that failed to commit (their requests were refused).",
)
POLICY_EVALUATION_SECONDS: Final = Histogram(
    "facegate_policy_evaluation_duration_seconds",
    "Time the policy service took to decide one request.",
    ["engine"],
    buckets=_LATENCY_BUCKETS,
)
POLICY_EVALUATION_ERRORS: Final = Counter(
    "facegate_policy_evaluation_errors_total",
    "Decisions refused because the policy could not decide.",
    ["engine", "reason"],
)
ACTIVITY_STORE_ERRORS: Final = Counter(
    "facegate_activity_store_errors_total",
    "Activity-window reads or writes that failed (requests refused, or counted too long).",
)
# Set from the leads table at each scrape (gateway/observability/leads.py).
LEADS: Final = Gauge(
    "facegate_leads",
    "Investigative leads by review state.",
    ["review_state"],
    multiprocess_mode="max",
)

_Metric = TypeVar("_Metric", bound=MetricWrapperBase)
_children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}


def labelled(metric: _Metric, *values: str) -> _Metric:
    """`metric.labels(*values)` (values in the order of its label names), the child kept.

    `labels` validates and joins its arguments and takes the metric's lock on every call,
    several microseconds a series, paid several times by every request. Label values come
    from bounded sets (see above), so this cache is bounded too. A child is never removed
    from its metric here (no `remove` or `clear` is called on these metrics), so a cached
    child is always the one the exposition reads.
    """
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return cast(_Metric, child)


_CODE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _error_codes() -> set[str]:
    codes: set[str] = set()
    pending: list[type[FacegateError]] = [FacegateError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


class ReasonCodes:
    """The bounded set a `reason` label is drawn from: the error tree's codes, the policy
    service's own (policy_error, ...) and every code in the policy's Rego (policy/codes.py).
    A policy revision loaded later that adds codes is counted under "other" for them until
    the process restarts (the codes are in its audit records all the same)."""

    def __init__(self, codes: Iterable[str] = ()) -> None:
        self._codes = _error_codes() | set(codes)

    def add_policy(self, policy_dir: Path) -> None:
        for path in sorted(policy_dir.glob("*.rego")):
            self._codes.update(reason_codes(path.read_text(encoding="utf-8")))

    def label(self, code: str) -> str:
        return code if code in self._codes else OTHER


@functools.cache
def reason_codes_for(policy_dir: Path) -> ReasonCodes:
    """The reason codes of the error tree and of the policy in `policy_dir`, read once."""
    # Imported here: the policy engine imports this module for its own metrics.
    from gateway.policy.engine import FAILURE_CODES

    codes = ReasonCodes(FAILURE_CODES)
    codes.add_policy(policy_dir)
    return codes


def operation_label(operation: str | None, known: frozenset[str]) -> str:
    if not operation:
        return NONE
    return operation if operation in known else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def review_state_label(state: str) -> str:
    return state if _CODE.match(state) else OTHER


def observe_policy_evaluation(engine: str, seconds: float, *, failures: list[str]) -> None:
    """One decision of the policy service; `failures` the codes of a refusal made because
    the policy could not decide (policy_error, policy_timeout, ...)."""
    POLICY_EVALUATION_SECONDS.labels(engine=engine).observe(seconds)
    for code in failures:
        POLICY_EVALUATION_ERRORS.labels(engine=engine, reason=code).inc()


@contextmanager
def observe_batch(records: int, *, waiting: int) -> Iterator[None]:
    """One group commit of the audit log: its size, what queued behind it, its time."""
    AUDIT_BATCH_RECORDS.observe(records)
    AUDIT_QUEUE_RECORDS.set(waiting)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        AUDIT_COMMIT_FAILURES.inc()
        raise
    finally:
        AUDIT_COMMIT_SECONDS.observe(time.perf_counter() - started)


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type: this process's series, or with
    PROMETHEUS_MULTIPROC_DIR set, every worker's summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
