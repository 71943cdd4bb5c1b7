"""What an audience sees of a computed figure.

``oversight`` sees every value, case numbers and officers included. ``public`` sees
aggregates only (templates refuse a public list, signal or grouping by an identifying
field: ``templates.IDENTIFYING``), and no small count: a value from 1 to threshold - 1 is
shown as "fewer than N".

Suppression alone is undone by subtraction: publish "searches: 53" and "by agency: A
fewer than 5, B 20, C 30" and A is 3. So suppression is completed, figure by figure
(primary and complementary suppression, as statistical offices do): in every set of cells
whose total a reader can know (the whole figure, whose total is the ungrouped figure of
the same query, and in a figure grouped by several names every row and column: the
figures grouped by fewer names), if any cell is suppressed then at least two are, and the
suppressed cells together hold at least the threshold, by suppressing further cells,
smallest first. A reader can then subtract to learn the suppressed cells' sum, never one
small cell. What this does not cover: two different queries whose difference is one small
group (a template author's care: publish margins of one query, not overlapping ones).

The transformation is a pure function of the computed figure and the threshold, so
``report verify`` applies it to its own recomputation and compares what was published.
"""

from __future__ import annotations

from typing import Any

from gateway.reports.results import Cell, Result
from gateway.reports.templates import Audience

COMPLEMENTARY = "suppressed (complementary)"


def small(threshold: int) -> str:
    return f"fewer than {threshold}"


def published(result: Result, *, audience: Audience, threshold: int) -> Any:
    """The figure's value as the report states it for ``audience``."""
    if result.rows is not None:
        return result.rows
    if audience == "oversight" or threshold <= 1:
        hidden: dict[int, str] = {}
    else:
        hidden = suppressed(result.cells, threshold)
    values = [hidden.get(i, cell.value) for i, cell in enumerate(result.cells)]
    if not result.grouped:
        return values[0]
    return [
        {"group": cell.group, "value": value}
        for cell, value in zip(result.cells, values, strict=True)
    ]


def suppressed(cells: list[Cell], threshold: int) -> dict[int, str]:
    """The cells to hide, by index, with what is shown instead."""
    hidden = {i: small(threshold) for i, c in enumerate(cells) if 0 < c.weight < threshold}
    if not hidden:
        return hidden
    names = list(cells[0].group)
    slices: list[list[int]] = [list(range(len(cells)))]
    if len(names) > 1:
        for name in names:
            others = [n for n in names if n != name]
            by_rest: dict[tuple[str, ...], list[int]] = {}
            for i, cell in enumerate(cells):
                by_rest.setdefault(tuple(str(cell.group[n]) for n in others), []).append(i)
            slices.extend(by_rest.values())
    changed = True
    while changed:
        changed = False
        for members in slices:
            hid = [i for i in members if i in hidden]
            if not hid:
                continue
            if len(hid) >= 2 and sum(cells[i].weight for i in hid) >= threshold:
                continue
            shown = [i for i in members if i not in hidden]
            if not shown:
                continue
            smallest = min(shown, key=lambda i: (cells[i].weight, i))
            hidden[smallest] = COMPLEMENTARY
            changed = True
    return hidden
