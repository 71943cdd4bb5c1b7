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


def predicate(where: Mapping[str, Condition]) -> Callable[[Record], bool]:
    """One test of a whole record: every condition of ``where``."""
    # (read, test, how a list-valued field is met: "any" element, "all" elements (a
    # negation: no element is the value), or "whole" (exists))
    parts: list[tuple[Callable[[Record], Any], Callable[[Any], bool], str]] = []
    for name, condition in where.items():
        mode = "any"
        if isinstance(condition, dict):
            mode = "whole" if "exists" in condition else "all" if "in" not in condition else "any"
        parts.append((getter(name), _test(condition), mode))

    def matches(record: Record) -> bool:
        for read, test, mode in parts:
            value = read(record)
            if isinstance(value, list) and mode != "whole":
                items = [item for item in value if _hashable(item)]
                met = any(map(test, items)) if mode == "any" else all(map(test, items))
                if not met:
                    return False
            elif not test(value):
                return False
        return True

    return matches


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
