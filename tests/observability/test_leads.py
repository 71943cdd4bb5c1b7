"""facegate_leads{review_state}: read from the leads table at each scrape."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.leads.models import LeadRow
from gateway.migrate import upgrade_async
from gateway.serving import BackgroundServer
from tests.e2e.conftest import gateway_settings


def lead_gauge(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.labels["review_state"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "facegate_leads"
        for sample in family.samples
    }


def write_leads(database: Path, states: list[str]) -> None:
    """Leads rows as the migrated table holds them (only the status matters here)."""
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(sa.delete(LeadRow))
        for index, state in enumerate(states):
            connection.execute(
                sa.insert(LeadRow).values(
                    id=f"L{index}",
                    created_at=datetime(2026, 11, 30, tzinfo=UTC),
                    search_request_id=f"r{index}",
                    rank=1,
                    agency="Metro PD",
                    officer="officer-1",
                    vendor="rekognition",
                    operation="SearchFacesByImage",
                    probe_digests=[],
                    candidate_digest="0" * 64,
                    similarity=99.0,
                    status=state,
                )
            )
    engine.dispose()


async def test_the_gauge_follows_the_leads_table(tmp_path: Path) -> None:
    database = tmp_path / "facegate.db"
    url = f"sqlite+aiosqlite:///{database}"
    await upgrade_async(url)
    settings = gateway_settings(url, tmp_path, "http://127.0.0.1:9")
    with BackgroundServer(create_app(settings)) as gateway:
        assert lead_gauge(gateway.url) == {}  # no leads yet: no series

        write_leads(database, ["pending", "pending", "verified", "2026-HOM-0042 Smith"])
        # A state that is not a short code (here, free text) is "other", never a label.
        assert lead_gauge(gateway.url) == {"pending": 2, "verified": 1, "other": 1}

        write_leads(database, ["verified"])
        assert lead_gauge(gateway.url) == {"verified": 1}
