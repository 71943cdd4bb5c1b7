"""The engine: every figure of a report in one streaming pass over the records.

Records arrive in log order (seq ascending), as dicts (query.py). Nothing is kept but each
figure's accumulator: a count, a set, a running sum per group, the rows of a list, a
signal's tallies. Records are dispatched by ``event_type`` to the figures whose ``where``
names it, and each distinct ``where`` is tested once per record however many figures share
it (a template's figures mostly differ in their grouping, not their filter): a record
costs only the filters that could count it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from gateway.reports.periods import Period
from gateway.reports.query import (
    Query,
    Record,
    getter,
    group_keys,
    key_reader,
    predicate,
    scalar,
)
from gateway.reports.results import Cell, Result
from gateway.reports.signals import SIGNALS
from gateway.reports.templates import ReportField, ReportSettings

# What every record carries that the engine itself reads.
BASE_NAMES = frozenset({"seq", "time", "event_type"})


class Accumulator(Protocol):
    # Count a record, which the figure's ``where`` already matched (an attribute: an
    # accumulator may set a closure made for its query).
    @property
    def add(self) -> Callable[[Record], None]: ...

    def result(self) -> Result: ...


class _Aggregate:
    """count / distinct / sum / rate, per group."""

    def __init__(self, query: Query) -> None:
        self._names = list(query.group_by)
        self._keys = [getter(n) for n in self._names]
        self._kind = query.aggregate
        self._cells: dict[tuple[Any, ...], list[Any]] = {}
        self._of: Callable[[Record], Any] | None = None
        self._hit: Callable[[Record], bool] | None = None
        if query.distinct is not None:
            self._of = getter(query.distinct)
        if query.sum is not None:
            self._of = getter(query.sum)
        if query.rate is not None:
            self._hit = predicate(query.rate)
        self.add: Callable[[Record], None] = self._counter() or self._add

    def _counter(self) -> Callable[[Record], None] | None:
        """A count grouped by single-valued names (most figures), as one closure: the
        general ``_add`` below, less the per-record tests it makes for lists and kinds."""
        if self._kind != "count" or not all(scalar(n) for n in self._names):
            return None
        cells = self._cells
        key_of = key_reader(self._names)

        def count(record: Record) -> None:
            key = key_of(record)
            cell = cells.get(key)
            if cell is None:
                cells[key] = [1, 0]
            else:
                cell[0] += 1

        return count

    def _new(self) -> list[Any]:
        return [0, set() if self._kind == "distinct" else 0]

    def _add(self, record: Record) -> None:
        if len(self._keys) == 1:  # the common case, without building a product
            value = self._keys[0](record)
            keys: Iterable[tuple[Any, ...]] = (
                group_keys(self._keys, record) if isinstance(value, list | dict) else [(value,)]
            )
        else:
            keys = group_keys(self._keys, record) if self._keys else [()]
        for key in keys:
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = self._new()
            cell[0] += 1
            if self._kind == "distinct":
                assert self._of is not None
                value = self._of(record)
                if value is not None and not isinstance(value, dict | list):
                    cell[1].add(value)
            elif self._kind == "sum":
                assert self._of is not None
                value = self._of(record)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    cell[1] += value
            elif self._kind == "rate":
                assert self._hit is not None
                cell[1] += self._hit(record)

    def _value(self, cell: list[Any]) -> Any:
        count, extra = cell
        if self._kind == "count":
            return count
        if self._kind == "distinct":
            return len(extra)
        if self._kind == "rate":
            return round(extra / count, 4) if count else None
        return round(extra, 6) if isinstance(extra, float) else extra

    def _cell(self, group: dict[str, Any], cell: list[Any]) -> Cell:
        value = self._value(cell)
        weight = value if self._kind in {"count", "distinct"} else cell[0]
        return Cell(group, value, weight)

    def result(self) -> Result:
        if not self._keys:
            return Result(grouped=False, cells=[self._cell({}, self._cells.get((), self._new()))])
        cells = [
            self._cell(dict(zip(self._names, key, strict=True)), c)
            for key, c in sorted(self._cells.items(), key=lambda kv: _sort_key(kv[0]))
        ]
        return Result(grouped=True, cells=cells)


class _List:
    """The matching records' named fields, with each record's seq, in log order."""

    def __init__(self, query: Query) -> None:
        assert query.list_ is not None
        self._columns = [(n, getter(n)) for n in query.list_]
        self._rows: list[dict[str, Any]] = []
        self.add: Callable[[Record], None] = self._add

    def _add(self, record: Record) -> None:
        row = {"seq": record["seq"]}
        row.update((name, read(record)) for name, read in self._columns)
        self._rows.append(row)

    def result(self) -> Result:
        return Result(grouped=False, rows=self._rows)


def _sort_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in key)


def _event_types(query: Query) -> list[str] | None:
    """The event types a query's ``where`` restricts it to; None: any."""
    condition = query.where.get("event_type")
    if isinstance(condition, str):
        return [condition]
    if isinstance(condition, list) and all(isinstance(c, str) for c in condition):
        return [str(c) for c in condition]
    return None


def _always(record: Record) -> bool:
    return True


# A filter and the adders (``Accumulator.add``) of the figures behind it.
Route = tuple[Callable[[Record], bool], list[Callable[[Record], None]]]


class Evaluator:
    """The figures of ``fields`` over the records of ``period``; ``add`` each record in
    log order, then ``results``. ``names`` and ``event_types`` say what records it reads,
    and ``reads(name)`` of which event types it reads a field: a source may leave out the
    rest."""

    def __init__(
        self, fields: Sequence[ReportField], period: Period, settings: ReportSettings
    ) -> None:
        self._start, self._end = period.start_text, period.end_text
        self._accumulators: dict[str, Accumulator] = {}
        # event type (None: any) -> filter -> the accumulators behind it
        routes: dict[str | None, dict[str, Route]] = {}
        self.names: set[str] = set(BASE_NAMES)
        types: set[str] | None = set()
        read_by_type: dict[str | None, set[str]] = {}
        for report_field in fields:
            query = report_field.query
            accumulator: Accumulator
            where = dict(query.where)
            if query.signal is not None:
                signal = SIGNALS[query.signal]
                accumulator = signal.make(settings)
                wanted: list[str] | None = list(signal.event_types)
                used = set(signal.names)
            else:
                accumulator = _List(query) if query.list_ is not None else _Aggregate(query)
                wanted = _event_types(query)
                used = query.names()
                if wanted is not None:
                    del where["event_type"]  # dispatch tests it
            self.names |= used
            for event_type in wanted if wanted is not None else [None]:
                read_by_type.setdefault(event_type, set()).update(n.split(".", 1)[0] for n in used)
            self._accumulators[report_field.id] = accumulator
            key = json.dumps(where, sort_keys=True)
            for event_type in wanted if wanted is not None else [None]:
                by_filter = routes.setdefault(event_type, {})
                if key not in by_filter:
                    by_filter[key] = (predicate(where) if where else _always, [])
                by_filter[key][1].append(accumulator.add)
            if wanted is None:
                types = None
            elif types is not None:
                types.update(wanted)
        self._any = list(routes.pop(None, {}).values())
        self._by_type = {t: list(r.values()) for t, r in routes.items() if t is not None}
        self.event_types: frozenset[str] | None = None if types is None else frozenset(types)
        # detail.x needs the whole detail column; month and date are read from time.
        self.names = {n.split(".", 1)[0] for n in self.names if n not in {"month", "date"}}
        self._read_by_type = read_by_type

    def reads(self, name: str) -> frozenset[str] | None:
        """The event types whose records the figures read ``name`` of; None: every type."""
        if name in self._read_by_type.get(None, set()):
            return None
        return frozenset(t for t, names in self._read_by_type.items() if t and name in names)

    def add(self, record: Record) -> None:
        time = record["time"]
        if not self._start <= time < self._end:
            return
        for matches, adders in self._by_type.get(record["event_type"], ()):
            if matches(record):
                for add in adders:
                    add(record)
        for matches, adders in self._any:
            if matches(record):
                for add in adders:
                    add(record)

    def add_all(self, records: Iterable[Record]) -> None:
        # ``add``, inlined: this loop runs once per record of the period.
        start, end = self._start, self._end
        routes, every = self._by_type.get, self._any
        for record in records:
            if not start <= record["time"] < end:
                continue
            for matches, adders in routes(record["event_type"], ()):
                if matches(record):
                    for add in adders:
                        add(record)
            for matches, adders in every:
                if matches(record):
                    for add in adders:
                        add(record)

    def results(self) -> dict[str, Result]:
        return {name: acc.result() for name, acc in self._accumulators.items()}


def evaluate(
    fields: Sequence[ReportField],
    period: Period,
    settings: ReportSettings,
    records: Iterable[Record],
) -> dict[str, Result]:
    evaluator = Evaluator(fields, period, settings)
    evaluator.add_all(records)
    return evaluator.results()
