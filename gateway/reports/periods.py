"""Report periods: ``2026`` (a year), ``2026-Q4`` (a quarter), ``2026-11`` (a month), UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.audit.chain import format_time

_PATTERN = re.compile(r"(?P<year>\d{4})(?:-Q(?P<quarter>[1-4])|-(?P<month>0[1-9]|1[0-2]))?")


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    kind: str  # "year" | "quarter" | "month"
    start: datetime
    end: datetime  # exclusive

    @property
    def start_text(self) -> str:
        """As records write time (RFC 3339, microseconds, Z): compared as text, in order."""
        return format_time(self.start)

    @property
    def end_text(self) -> str:
        return format_time(self.end)


def parse_period(text: str) -> Period:
    """Raises ValueError naming the accepted forms."""
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"period {text!r} must read YYYY, YYYY-Qn or YYYY-MM (e.g. 2026-Q4)")
    year = int(match["year"])
    if match["quarter"]:
        first = 3 * (int(match["quarter"]) - 1) + 1
        kind, months = "quarter", 3
    elif match["month"]:
        first, kind, months = int(match["month"]), "month", 1
    else:
        first, kind, months = 1, "year", 12
    start = datetime(year, first, 1, tzinfo=UTC)
    after = first - 1 + months
    end = datetime(year + after // 12, after % 12 + 1, 1, tzinfo=UTC)
    return Period(label=text.strip(), kind=kind, start=start, end=end)
