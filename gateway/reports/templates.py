"""Report templates and report settings: data under ``policies/reports/``, not code.

    policies/reports/templates/<id>.yaml   one template: title, law, period, audiences,
                                           fields (each a query, see query.py)
    policies/reports/settings.yaml         the small-count threshold and the misuse
                                           signals' thresholds

An admin adds a report by adding a template file; nothing is registered in code. A
template that does not load is refused with the file and the key that is wrong.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import rfc8785
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway import yaml_files
from gateway.errors import ConfigurationError
from gateway.reports.query import Query, QueryError

PeriodKind = Literal["month", "quarter", "year"]
Audience = Literal["public", "oversight"]
AUDIENCES: tuple[Audience, ...] = ("public", "oversight")

# What a public report never shows: who searched, for which case, with which credentials,
# from where, or a record's own identifiers (a request id or digest leads back to one entry).
IDENTIFYING = frozenset(
    {
        "seq",
        "officer",
        "case_number",
        "key_id",
        "client_address",
        "warrant_id",
        "request_id",
        "probe_digests",
        "detail.lead_id",
        "detail.search_request_id",
        "detail.candidate_digest",
        "detail.authorisation_id",
        "detail.reference",
        "detail.rationale",
        "detail.note",
    }
)


class TemplateError(ConfigurationError, ValueError):
    """A template or settings file that cannot be used; the message names file and key."""


class ReportField(BaseModel):
    """One figure: what it is called, which law asks for it, and the query that makes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")
    label: str
    source: str  # the legal provision (or the reason) this figure answers
    query: Query
    audiences: list[Audience] = Field(default_factory=lambda: list(AUDIENCES))

    @model_validator(mode="after")
    def _public_aggregates(self) -> ReportField:
        if "public" not in self.audiences:
            return self
        if self.query.aggregate in {"list", "signal"}:
            raise QueryError(
                f"field {self.id!r}: a {self.query.aggregate} names individual entries;"
                " give it `audiences: [oversight]`"
            )
        # A distinct count shows how many, not which: only groups name values.
        leaking = sorted(name for name in self.query.group_by if name in IDENTIFYING)
        if leaking:
            raise QueryError(
                f"field {self.id!r}: a public figure may not group by {leaking};"
                " give it `audiences: [oversight]`"
            )
        return self


class ReportTemplate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    title: str
    law: str
    period: PeriodKind  # the statutory period; any period may still be asked for
    audiences: list[Audience]
    description: str
    fields: list[ReportField] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_fields(self) -> ReportTemplate:
        ids = [f.id for f in self.fields]
        if len(ids) != len(set(ids)):
            raise QueryError(f"field ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        return self

    def fields_for(self, audience: Audience) -> list[ReportField]:
        return [f for f in self.fields if audience in f.audiences]

    def digest(self) -> str:
        """SHA-256 of the template's canonical JSON: which version a report was made from."""
        body = rfc8785.dumps(self.model_dump(mode="json", by_alias=True))
        return "sha256:" + hashlib.sha256(body).hexdigest()


class VolumeSignal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    robust_z: float = 3.5  # 0.6745 (x - median) / MAD, Iglewicz and Hoaglin's cut-off
    min_officers: int = 3  # fewer peers than this: no distribution to compare with
    min_searches: int = 10  # an officer below this is never "far above"


class CaseReuseSignal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    max_searches: int = 50
    max_officers: int = 5


class ReportSettings(BaseModel):
    """``policies/reports/settings.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    small_count_threshold: int = Field(default=5, ge=1)
    officer_volume: VolumeSignal = VolumeSignal()
    case_reuse: CaseReuseSignal = CaseReuseSignal()
    max_exigent_per_officer: int = 3
    retry_window_days: int = 30


def reports_dir(policy_dir: Path) -> Path:
    return policy_dir / "reports"


def _read_yaml(path: Path) -> Any:
    try:
        return yaml_files.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: cannot be read: {exc}") from None


def _why(exc: ValidationError | QueryError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return str(exc)


def load_templates(policy_dir: Path) -> dict[str, ReportTemplate]:
    """Every template under ``policies/reports/templates``, by id (the file's stem)."""
    templates: dict[str, ReportTemplate] = {}
    for path in sorted((reports_dir(policy_dir) / "templates").glob("*.yaml")):
        try:
            template = ReportTemplate.model_validate(_read_yaml(path))
        except (ValidationError, QueryError) as exc:
            raise TemplateError(f"{path}: {_why(exc)}") from None
        if template.id != path.stem:
            raise TemplateError(f"{path}: id {template.id!r} is not the file's name")
        templates[template.id] = template
    return templates


def load_settings(policy_dir: Path) -> ReportSettings:
    path = reports_dir(policy_dir) / "settings.yaml"
    if not path.exists():
        return ReportSettings()
    try:
        return ReportSettings.model_validate(_read_yaml(path) or {})
    except ValidationError as exc:
        raise TemplateError(f"{path}: {_why(exc)}") from None
