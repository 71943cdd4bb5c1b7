"""The leads-by-review-state gauge, read from the database at each scrape.

Read, not counted as leads change: every replica serves the same table, and a count kept in
one process would see only the reviews that process handled. `facegate_leads{review_state}`
is the number of rows of the `leads` table (gateway/leads/) in each `status`; before that
table exists (a database not yet migrated to it) the gauge has no series.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.observability.metrics import LEADS, review_state_label

log = logging.getLogger(__name__)

LEADS_TABLE: Final = "leads"
STATE_COLUMN: Final = "status"
READ_TIMEOUT_SECONDS: Final = 2.0


def _has_lead_states(connection: sa.Connection) -> bool:
    inspector = sa.inspect(connection)
    if not inspector.has_table(LEADS_TABLE):
        return False
    return any(c["name"] == STATE_COLUMN for c in inspector.get_columns(LEADS_TABLE))


async def refresh_lead_states(engine: AsyncEngine) -> None:
    """Set the gauge from the table. A database that cannot be read leaves the gauge as
    it was (the scrape still answers; readiness reports the database)."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS), engine.connect() as connection:
            if not await connection.run_sync(_has_lead_states):
                return
            table = sa.table(LEADS_TABLE, sa.column(STATE_COLUMN))
            state = table.c[STATE_COLUMN]
            rows = (
                await connection.execute(sa.select(state, sa.func.count()).group_by(state))
            ).all()
    except Exception as exc:
        log.warning("could not read the leads' review states: %s", type(exc).__name__)
        return
    counts: dict[str, int] = {}
    for value, count in rows:
        label = review_state_label(str(value))
        counts[label] = counts.get(label, 0) + int(count)
    LEADS.clear()
    for label, count in counts.items():
        LEADS.labels(review_state=label).set(count)
