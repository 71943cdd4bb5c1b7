"""What step 3 reads of a case's authorisations: the bases an authority refused.

Apart from the rest of gateway/leads/ so that gathering imports the table and nothing else.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select

from gateway.db import RequestReader, map_database_errors
from gateway.leads.models import AuthorisationRow

# The same SELECT as `refused_bases` builds, for the reader's own sqlite3 connection.
_SQLITE_REFUSED: Final = (
    "SELECT DISTINCT basis FROM authorisations"
    " WHERE case_number = ? AND agency = ? AND state = 'refused'"
)


async def refused_bases(reads: RequestReader, *, case_number: str | None, agency: str) -> list[str]:
    """The bases of this case's authorisations an authority refused (the policy refuses the
    case's next search on such a basis), read when asked, never cached: a refusal committed
    before the call is seen. Raises StorageUnavailable: step 3 fails closed."""
    if case_number is None:
        return []
    with map_database_errors("the database failed: the case's authorisations could not be read"):
        if reads.on_sqlite_file:
            return sorted(
                basis for (basis,) in reads.sqlite_fetchall(_SQLITE_REFUSED, case_number, agency)
            )
        query = (
            select(AuthorisationRow.basis)
            .where(AuthorisationRow.case_number == case_number)
            .where(AuthorisationRow.agency == agency)
            .where(AuthorisationRow.state == "refused")
            .distinct()
        )
        async with reads.engine.connect() as connection:
            return sorted((await connection.scalars(query)).all())
