"""Policy test fixtures: a copy of the policy directory, and the policy on each engine."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from policy_support import ENGINE_KINDS, POLICY_DIR, open_test_engine, service_for

from gateway.policy.bundle import load_bundle
from gateway.policy.engine import PolicyService


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A copy of policies/ an admin (the test) may edit."""
    return Path(shutil.copytree(POLICY_DIR, tmp_path / "policies"))


@pytest.fixture(scope="module", params=ENGINE_KINDS)
async def repository_policy(request: pytest.FixtureRequest) -> AsyncIterator[PolicyService]:
    """The repository's policy on each kind of engine, shared by a module's tests."""
    engine = await open_test_engine(request.param, load_bundle(POLICY_DIR))
    service = service_for(engine, POLICY_DIR)
    yield service
    await service.close()
