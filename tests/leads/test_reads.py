"""The lead queue: oldest first, a search's leads best first, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.db import create_engine, session_factory
from gateway.leads import reads
from tests.cli.test_cli_leads import a_search


async def test_the_queue_is_paged_oldest_first_best_first(
    migrated_database_url: str, tmp_path: Path
) -> None:
    first = await a_search(migrated_database_url, tmp_path)
    second = await a_search(migrated_database_url, tmp_path, exigent=True)
    engine = create_engine(migrated_database_url)
    try:
        async with session_factory(engine)() as db:
            seen: list[str] = []
            cursor = None
            while True:
                page = await reads.list_leads(
                    db, agency="Metro PD", now=datetime.now(UTC), cursor=cursor, limit=1
                )
                seen += [lead.id for lead in page.leads]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            other = await reads.list_leads(db, agency="County SO", now=datetime.now(UTC))
    finally:
        await engine.dispose()
    assert seen == first + second
    assert other.leads == []


def test_similarity_bands_come_from_policy_data() -> None:
    bands = reads.similarity_bands(Path(__file__).resolve().parents[2] / "policies")
    assert [reads.band_of(s, bands) for s in (79.9, 80, 89.99, 90, 98.5, 99, 100)] == [
        "below", "[80,90)", "[80,90)", "[90,95)", "[95,99)", "[99,100]", "[99,100]",
    ]  # fmt: skip
