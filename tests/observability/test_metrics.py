"""Label values come from bounded sets: anything else is "other"."""

from __future__ import annotations

from pathlib import Path

from gateway.observability.metrics import (
    ReasonCodes,
    operation_label,
    reason_codes_for,
    review_state_label,
    status_label,
)
from gateway.vendors import REGISTRY

REPO = Path(__file__).resolve().parents[2]


def test_operations_are_the_vendors_own_names_or_other() -> None:
    known = REGISTRY["rekognition"].operation_names
    assert operation_label("SearchFacesByImage", known) == "SearchFacesByImage"
    assert operation_label("2026-HOM-0042", known) == "other"
    assert operation_label(None, known) == "none"
    for entry in REGISTRY.values():
        assert entry.operation_names, entry.protocol


def test_reasons_are_the_error_trees_and_the_policys_or_other() -> None:
    codes = reason_codes_for(REPO / "policies")
    assert codes.label("missing_case_number") == "missing_case_number"  # the policy's
    assert codes.label("warrant_expired") == "warrant_expired"
    assert codes.label("invalid_signature") == "invalid_signature"  # the error tree's
    assert codes.label("no_backend") == "no_backend"
    assert codes.label("policy_timeout") == "policy_timeout"  # the policy service's
    assert codes.label("officer-1") == "other"
    assert ReasonCodes().label("missing_case_number") == "other"  # not without the policy


def test_status_codes_and_review_states_are_bounded() -> None:
    assert status_label(200) == "200"
    assert status_label(999) == "other"
    assert review_state_label("pending") == "pending"
    assert review_state_label("Case 2026-HOM-0042") == "other"


def test_workers_sharing_a_multiprocess_directory_are_summed(tmp_path: Path) -> None:
    """`serve --workers N`: each worker writes its series to PROMETHEUS_MULTIPROC_DIR and
    any worker's /metrics serves the sum (two processes here, each counting one request)."""
    import os
    import subprocess
    import sys

    count_one = (
        "from gateway.observability import metrics;"
        "metrics.REQUESTS.labels(vendor='rekognition', operation='DetectFaces',"
        " decision='allow').inc()"
    )
    expose = "from gateway.observability.metrics import exposition;print(exposition()[0].decode())"
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count_one], env=env, check=True, cwd=REPO)
    page = subprocess.run(
        [sys.executable, "-c", expose], env=env, check=True, cwd=REPO, capture_output=True
    ).stdout.decode()
    line = 'facegate_requests_total{decision="allow",operation="DetectFaces",vendor="rekognition"}'
    assert f"{line} 2.0" in page
