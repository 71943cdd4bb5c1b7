"""Misuse signals for auditors, each one accumulator over the records in log order.

The Evansville pattern: an officer who hid Clearview searches behind a real case number
was caught only by unexplained volume. So the signals look at what the log shows about
behaviour, not at what a request was called: volume against peers, case numbers shared
out, trying until allowed, exigency as a habit, authorisations that never came, refusals
at protected places. Each signal names the log entries (seqs) behind it, so an auditor
can pull each one and its inclusion proof. Thresholds are data (``ReportSettings``).

A search is an ``identify`` decision record: the one record per search that is written
before anything is forwarded, allowed or refused.
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.reports.query import SIGNAL_NAMES
from gateway.reports.results import Result
from gateway.reports.templates import ReportSettings

Record = Mapping[str, Any]
MAD_SCALE = 0.6745  # makes the MAD comparable to a standard deviation under normality
MEAN_AD_SCALE = 1.253314  # the same for the mean absolute deviation


def _is_search(record: Record) -> bool:
    return record.get("event_type") == "decision" and record.get("operation_kind") == "identify"


def _allowed(record: Record) -> bool:
    return record.get("decision") == "allow"


class _Signal(ABC):
    """One misuse signal: fed every record of the period once, then asked for its rows."""

    def __init__(self, settings: ReportSettings) -> None:
        self.settings = settings

    @abstractmethod
    def add(self, record: Record) -> None: ...

    @abstractmethod
    def rows(self) -> list[dict[str, Any]]: ...

    def result(self) -> Result:
        return Result(grouped=False, rows=self.rows())


class OfficerVolume(_Signal):
    """Officers whose allowed searches are far above their agency's: robust z-score
    0.6745 (x - median) / MAD over the agency's officers (1.2533 x the mean absolute
    deviation in place of MAD / 0.6745 when the MAD is 0), above ``robust_z``."""

    def __init__(self, settings: ReportSettings) -> None:
        super().__init__(settings)
        self._seqs: dict[tuple[str, str], list[int]] = defaultdict(list)

    def add(self, record: Record) -> None:
        if _is_search(record) and _allowed(record) and record.get("officer"):
            self._seqs[(record.get("agency") or "", record["officer"])].append(record["seq"])

    def rows(self) -> list[dict[str, Any]]:
        limits = self.settings.officer_volume
        agencies: dict[str, dict[str, list[int]]] = defaultdict(dict)
        for (agency, officer), seqs in self._seqs.items():
            agencies[agency][officer] = seqs
        rows = []
        for agency, officers in sorted(agencies.items()):
            if len(officers) < limits.min_officers:
                continue
            counts = [len(s) for s in officers.values()]
            median = statistics.median(counts)
            mad = statistics.median(abs(c - median) for c in counts)
            # Most officers alike makes the MAD 0; then the mean absolute deviation,
            # scaled to match (Iglewicz and Hoaglin's modified z-score does the same).
            spread = (
                mad / MAD_SCALE
                if mad
                else MEAN_AD_SCALE * statistics.fmean(abs(c - median) for c in counts)
            )
            for officer, seqs in sorted(officers.items()):
                if len(seqs) < limits.min_searches or not spread:
                    continue
                score = (len(seqs) - median) / spread
                if score > limits.robust_z:
                    rows.append(
                        {
                            "agency": agency,
                            "officer": officer,
                            "searches": len(seqs),
                            "agency_median": median,
                            "agency_mad": mad,
                            "robust_z": round(score, 2),
                            "entries": seqs,
                        }
                    )
        return rows


class CaseReuse(_Signal):
    """Case numbers under which unusually many searches, or officers, searched."""

    def __init__(self, settings: ReportSettings) -> None:
        super().__init__(settings)
        self._seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._officers: dict[tuple[str, str], set[str]] = defaultdict(set)

    def add(self, record: Record) -> None:
        case = record.get("case_number")
        if case and _is_search(record):
            key = (record.get("agency") or "", case)
            self._seqs[key].append(record["seq"])
            officer = record.get("officer")
            if officer:
                self._officers[key].add(officer)

    def rows(self) -> list[dict[str, Any]]:
        limits = self.settings.case_reuse
        rows = []
        for key, seqs in sorted(self._seqs.items()):
            officers = self._officers[key]
            if len(seqs) > limits.max_searches or len(officers) > limits.max_officers:
                rows.append(
                    {
                        "agency": key[0],
                        "case_number": key[1],
                        "searches": len(seqs),
                        "officers": sorted(officers),
                        "entries": seqs,
                    }
                )
        return rows


@dataclass(slots=True)
class _Refusal:
    seq: int
    time: str


class RetryAfterRefusal(_Signal):
    """An allowed search after a refused one for the same probe (anyone's) or the same
    case by the same officer, within ``retry_window_days``: trying until allowed."""

    def __init__(self, settings: ReportSettings) -> None:
        super().__init__(settings)
        self._by_probe: dict[str, list[_Refusal]] = defaultdict(list)
        self._by_case: dict[tuple[str, str, str], list[_Refusal]] = defaultdict(list)
        self._rows: list[dict[str, Any]] = []
        self._window = timedelta(days=settings.retry_window_days)

    def add(self, record: Record) -> None:
        if not _is_search(record):
            return
        probes = [p for p in record.get("probe_digests") or [] if isinstance(p, str)]
        case = record.get("case_number")
        case_key = (record.get("agency") or "", record.get("officer") or "", case or "")
        allowed = _allowed(record)
        if allowed and not (
            (case and case_key in self._by_case) or any(p in self._by_probe for p in probes)
        ):
            return  # most searches: no refusal before them for this probe or case
        if not allowed:
            refusal = _Refusal(record["seq"], record["time"])
            for probe in probes:
                self._by_probe[probe].append(refusal)
            if case:
                self._by_case[case_key].append(refusal)
            return
        earlier = {r.seq: r for p in probes for r in self._by_probe.get(p, [])}
        if case:
            earlier |= {r.seq: r for r in self._by_case.get(case_key, [])}
        if not earlier:
            return
        now = _instant(record["time"])
        refusals = sorted(s for s, r in earlier.items() if now - _instant(r.time) <= self._window)
        if refusals:
            self._rows.append(
                {
                    "agency": record.get("agency"),
                    "officer": record.get("officer"),
                    "case_number": case,
                    "search": record["seq"],
                    "refused_before": refusals,
                    "entries": [*refusals, record["seq"]],
                }
            )

    def rows(self) -> list[dict[str, Any]]:
        return self._rows


class ExigentUse(_Signal):
    """Searches each officer made on the exigent legal basis; ``flagged`` above the
    per-officer limit."""

    def __init__(self, settings: ReportSettings) -> None:
        super().__init__(settings)
        self._seqs: dict[tuple[str, str], list[int]] = defaultdict(list)

    def add(self, record: Record) -> None:
        if _is_search(record) and record.get("legal_basis") == "exigent":
            key = (record.get("agency") or "", record.get("officer") or "")
            self._seqs[key].append(record["seq"])

    def rows(self) -> list[dict[str, Any]]:
        limit = self.settings.max_exigent_per_officer
        return [
            {
                "agency": agency,
                "officer": officer,
                "exigent_searches": len(seqs),
                "flagged": len(seqs) > limit,
                "entries": seqs,
            }
            for (agency, officer), seqs in sorted(self._seqs.items())
        ]


class Authorisations(_Signal):
    """After-the-fact authorisations that were refused or ran overdue."""

    def __init__(self, settings: ReportSettings) -> None:
        super().__init__(settings)
        self._rows: list[dict[str, Any]] = []

    def add(self, record: Record) -> None:
        detail = record.get("detail") or {}
        state = detail.get("state") if isinstance(detail, dict) else None
        if record.get("event_type") == "authorisation" and state in {"refused", "overdue"}:
            self._rows.append(
                {
                    "state": state,
                    "authorisation_id": detail.get("authorisation_id"),
                    "basis": detail.get("basis"),
                    "agency": record.get("agency"),
                    "officer": record.get("officer"),
                    "case_number": record.get("case_number"),
                    "entries": [record["seq"]],
                }
            )

    def rows(self) -> list[dict[str, Any]]:
        return self._rows


class ProtectedPlaceRefusals(_Signal):
    """Searches refused because the probe was taken at a protected place, per officer."""

    def __init__(self, settings: ReportSettings) -> None:
        super().__init__(settings)
        self._seqs: dict[tuple[str, str], list[int]] = defaultdict(list)

    def add(self, record: Record) -> None:
        codes = record.get("reason_codes") or []
        if record.get("event_type") == "decision" and "protected_place" in codes:
            key = (record.get("agency") or "", record.get("officer") or "")
            self._seqs[key].append(record["seq"])

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"agency": a, "officer": o, "refusals": len(s), "entries": s}
            for (a, o), s in sorted(self._seqs.items())
        ]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class SignalKind:
    make: Callable[[ReportSettings], _Signal]
    event_types: tuple[str, ...]
    names: frozenset[str]


_SEARCH_NAMES = frozenset(
    {"agency", "officer", "case_number", "operation_kind", "decision", "probe_digests"}
)
SIGNALS: dict[str, SignalKind] = {
    "officer_volume": SignalKind(OfficerVolume, ("decision",), _SEARCH_NAMES),
    "case_reuse": SignalKind(CaseReuse, ("decision",), _SEARCH_NAMES),
    "retry_after_refusal": SignalKind(RetryAfterRefusal, ("decision",), _SEARCH_NAMES),
    "exigent_use": SignalKind(ExigentUse, ("decision",), _SEARCH_NAMES | {"legal_basis"}),
    "authorisations": SignalKind(
        Authorisations,
        ("authorisation",),
        frozenset({"agency", "officer", "case_number", "detail"}),
    ),
    "protected_place_refusals": SignalKind(
        ProtectedPlaceRefusals, ("decision",), frozenset({"agency", "officer", "reason_codes"})
    ),
}
assert set(SIGNALS) == set(SIGNAL_NAMES), "query.SIGNAL_NAMES and SIGNALS must agree"
