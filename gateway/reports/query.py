"""The report query vocabulary, and the one engine that evaluates it over audit records.

A record here is an audit entry in its JSON form: the dict that one line of
``facegate audit export`` parses to (``chain.canonical_bytes``: fields whose value is null
are absent, ``time`` is RFC 3339 UTC with microseconds and a ``Z``, plus ``seq``). The
database path builds the same dicts from the columns (``sources.py``), so a figure made on
the gateway host and one recomputed from an export come from the same code.

A query (YAML in a template, JSON in a report) names exactly one aggregate::

    where:     {name: condition, ...}   every condition must hold (AND)
    group_by:  [name, ...]              one figure per combination of values
    count: records | distinct: name | sum: name | rate: {name: condition} | list: [name...]
    signal: <name>                      a misuse signal (signals.py), params from settings

Names: any ``AuditRecord`` field, ``seq``, ``detail.<key>[.<key>...]``, and ``month``
(YYYY-MM) and ``date`` (YYYY-MM-DD) of ``time``. A condition is a value (equal), a list
(one of), or one of ``{not: v}``, ``{in: [..]}``, ``{not_in: [..]}``, ``{exists: bool}``.
Where the record's value is a list (``reason_codes``, ``probe_digests``), a condition
holds when any element meets it, and a group_by on it counts the record once per element.
The report's period is added to every query by the engine (``time`` in [start, end)).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.audit.records import AuditRecord
from gateway.errors import ConfigurationError

Record = Mapping[str, Any]
Scalar = str | int | float | bool | None
Condition = Scalar | list[Scalar] | dict[str, Any]

DERIVED = {"month": 7, "date": 10}  # prefixes of the RFC 3339 time
NAMES = frozenset(AuditRecord.model_fields) | {"seq"} | frozenset(DERIVED)
# The record fields that hold a list or a mapping; every other name holds one value.
_COMPOSITE = frozenset({"reason_codes", "probe_digests", "obligations", "detail"})
SCALAR_NAMES = NAMES - _COMPOSITE
_OPERATORS = frozenset({"not", "in", "not_in", "exists"})
AGGREGATES = ("count", "distinct", "sum", "rate", "list", "signal")
# The misuse signals signals.py computes (it checks it implements exactly these).
SIGNAL_NAMES = (
    "officer_volume",
    "case_reuse",
    "retry_after_refusal",
    "exigent_use",
    "authorisations",
    "protected_place_refusals",
)


class QueryError(ConfigurationError, ValueError):
    """A query that names an unknown field or operator, or no aggregate (or two)."""


def check_name(name: str) -> str:
    if name in NAMES or (name.startswith("detail.") and len(name) > len("detail.")):
        return name
    raise QueryError(
        f"unknown field {name!r}: use a record field, seq, month, date or detail.<key>"
    )


def _check_condition(name: str, condition: Condition) -> None:
    if isinstance(condition, dict):
        if len(condition) != 1 or not set(condition) <= _OPERATORS:
            raise QueryError(
                f"condition on {name!r} must be a value, a list or one of"
                f" {sorted(_OPERATORS)}, not {condition!r}"
            )
        (operator, operand) = next(iter(condition.items()))
        if operator in {"in", "not_in"} and not isinstance(operand, list):
            raise QueryError(f"{operator} on {name!r} takes a list")
        if operator == "exists" and not isinstance(operand, bool):
            raise QueryError(f"exists on {name!r} takes true or false")


class Query(BaseModel):
    """One figure's query: filters, groups and exactly one aggregate (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    where: dict[str, Condition] = Field(default_factory=dict)
    group_by: list[str] = Field(default_factory=list)
    count: Literal["records"] | None = None
    distinct: str | None = None
    sum: str | None = None
    rate: dict[str, Condition] | None = None
    list_: list[str] | None = Field(default=None, alias="list")
    signal: str | None = None

    @field_validator("where", "rate")
    @classmethod
    def _conditions(cls, value: dict[str, Condition] | None) -> dict[str, Condition] | None:
        for name, condition in (value or {}).items():
            check_name(name)
            _check_condition(name, condition)
        return value

    @field_validator("group_by", "list_")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            check_name(name)
        return value

    @model_validator(mode="after")
    def _one_aggregate(self) -> Query:
        given = [name for name in AGGREGATES if self.aggregate_value(name) is not None]
        if len(given) != 1:
            raise QueryError(f"a query names exactly one of {', '.join(AGGREGATES)}; got {given}")
        for name in (self.distinct, self.sum):
            if name is not None:
                check_name(name)
        if self.signal is not None and self.signal not in SIGNAL_NAMES:
            raise QueryError(f"unknown signal {self.signal!r} (known: {', '.join(SIGNAL_NAMES)})")
        if self.list_ is not None and self.group_by:
            raise QueryError("a list is not grouped: it lists records in log order")
        return self

    def aggregate_value(self, name: str) -> Any:
        return self.list_ if name == "list" else getattr(self, name)

    @property
    def aggregate(self) -> str:
        return next(name for name in AGGREGATES if self.aggregate_value(name) is not None)

    def names(self) -> set[str]:
        """Every field the query reads (the database path selects only these)."""
        used = set(self.where) | set(self.group_by) | set(self.rate or {})
        used |= set(self.list_ or [])
        used |= {n for n in (self.distinct, self.sum) if n is not None}
        return used

    def public_dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def getter(name: str) -> Callable[[Record], Any]:
    """How to read ``name`` from a record (None where absent)."""
    if name in DERIVED:
        width = DERIVED[name]
        return lambda record: record["time"][:width]
    if name.startswith("detail."):
        path = name.split(".")[1:]

        def read(record: Record) -> Any:
            value: Any = record.get("detail")
            for key in path:
                if not isinstance(value, dict):
                    return None
                value = value.get(key)
            return value

        return read
    return lambda record: record.get(name)


def _test(condition: Condition) -> Callable[[Any], bool]:
    """A test of one (non-list) value."""
    if isinstance(condition, dict):
        operator, operand = next(iter(condition.items()))
        if operator == "not":
            return lambda value: value != operand
        if operator == "in":
            allowed = frozenset(operand)
            return lambda value: _hashable(value) and value in allowed
        if operator == "not_in":
            refused = frozenset(operand)
            return lambda value: not (_hashable(value) and value in refused)
        present = bool(operand)
        return lambda value: (value is not None and value != []) is present
    if isinstance(condition, list):
        allowed = frozenset(condition)
        return lambda value: _hashable(value) and value in allowed
    return lambda value: value == condition


def _hashable(value: Any) -> bool:
    return not isinstance(value, dict | list)


def scalar(name: str) -> bool:
    """Whether ``name`` always reads a single value (None, str, number, bool) from a record
    of the log: a column that is not a list or a mapping, or a part of ``time``. A record
    of the log is an ``AuditRecord`` (the writer validates it and the export is checked
    against the signed checkpoint before it is read), so such a name needs no list test."""
    return name in SCALAR_NAMES


def predicate(where: Mapping[str, Condition]) -> Callable[[Record], bool]:
    """One test of a whole record: every condition of ``where``, compiled once into a
    closure (a record is tested per figure filter, a million times a year)."""
    checks: list[Callable[[Record], bool]] = []
    equal: list[tuple[str, Scalar]] = []  # name == value on single-valued columns
    for name, condition in where.items():
        if scalar(name) and name not in DERIVED and not isinstance(condition, list | dict):
            equal.append((name, condition))
            continue
        checks.append(_check(name, condition))
    if len(equal) == 1:
        ((a, va),) = equal
        checks.insert(0, lambda record: record.get(a) == va)
    elif len(equal) == 2:
        (a, va), (b, vb) = equal
        checks.insert(0, lambda record: record.get(a) == va and record.get(b) == vb)
    elif equal:
        names, values = tuple(n for n, _ in equal), tuple(v for _, v in equal)
        checks.insert(0, lambda record: tuple(map(record.get, names)) == values)
    if not checks:
        return lambda record: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda record: first(record) and second(record)

    def every(record: Record) -> bool:
        for check in checks:  # noqa: SIM110 (a loop: all() over a generator costs a frame)
            if not check(record):
                return False
        return True

    return every


def _check(name: str, condition: Condition) -> Callable[[Record], bool]:
    """The test of one condition on a record."""
    read, test = getter(name), _test(condition)
    if scalar(name):
        return lambda record: test(read(record))
    # How a list-valued field is met: "any" element, "all" elements (a negation: no element
    # is the value), or "whole" (exists).
    mode = "any"
    if isinstance(condition, dict):
        mode = "whole" if "exists" in condition else "all" if "in" not in condition else "any"

    def check(record: Record) -> bool:
        value = read(record)
        if isinstance(value, list) and mode != "whole":
            items = [item for item in value if _hashable(item)]
            return any(map(test, items)) if mode == "any" else all(map(test, items))
        return test(value)

    return check


def key_reader(names: list[str]) -> Callable[[Record], tuple[Any, ...]]:
    """The group of a record as one tuple, for names that are all ``scalar``: a closure
    that reads plain columns with ``dict.get`` and no further call."""
    if any(name in DERIVED for name in names):
        reads = [getter(name) for name in names]
        return lambda record: tuple([read(record) for read in reads])
    if not names:
        return lambda record: ()
    if len(names) == 1:
        (a,) = names
        return lambda record: (record.get(a),)
    if len(names) == 2:
        a, b = names
        return lambda record: (record.get(a), record.get(b))
    fields = tuple(names)
    return lambda record: tuple(map(record.get, fields))


def group_keys(readers: list[Callable[[Record], Any]], record: Record) -> Iterable[tuple[Any, ...]]:
    """The groups ``record`` counts in: one per element of each list-valued key."""
    values = []
    for read in readers:
        value = read(record)
        if isinstance(value, list):
            values.append([v for v in value if _hashable(v)] or [None])
        else:
            values.append([value if _hashable(value) else None])
    return itertools.product(*values)
