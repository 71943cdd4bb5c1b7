"""What step 3 reads of a case's authorisations: the bases an authority refused.

Apart from the rest of gateway/leads/ so that gathering imports the table and nothing else.
"""

from __future__ import annotations

from sqlalchemy import select

from gateway.db import RequestReader, map_database_errors
from gateway.leads.models import AuthorisationRow


async def refused_bases(reads: RequestReader, *, case_number: str | None, agency: str) -> list[str]:
    """The bases of this case's authorisations an authority refused (the policy refuses the
    case's next search on such a basis). Raises StorageUnavailable: step 3 fails closed."""
    if case_number is None:
        return []
    query = (
        select(AuthorisationRow.basis)
        .where(AuthorisationRow.case_number == case_number)
        .where(AuthorisationRow.agency == agency)
        .where(AuthorisationRow.state == "refused")
        .distinct()
    )
    with map_database_errors("the database failed: the case's authorisations could not be read"):
        async with reads.engine.connect() as connection:
            return sorted((await connection.scalars(query)).all())
