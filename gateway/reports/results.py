"""What the engine computes for a figure, before an audience sees it (disclosure.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Cell:
    """One value of a figure: its group (empty for an ungrouped figure) and its value.
    ``weight`` is what small-count suppression compares with the threshold: the value of
    a count or a distinct count, the number of records behind a sum or a rate."""

    group: dict[str, Any]
    value: Any
    weight: int


@dataclass(slots=True)
class Result:
    """A computed figure: cells (aggregates), or rows (a list or a signal)."""

    grouped: bool
    cells: list[Cell] = field(default_factory=list)
    rows: list[dict[str, Any]] | None = None
