"""Principals: the people (and their agencies) that act through facegate."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Role(StrEnum):
    OFFICER = "officer"  # opens case sessions and searches
    REVIEWER = "reviewer"  # verifies leads by hand
    AUDITOR = "auditor"  # reads and verifies the audit log
    ADMIN = "admin"  # manages principals, warrants, vendors and policy


class Principal(BaseModel):
    """An authenticated caller, as the policy and the audit log see it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    agency: str
    roles: tuple[Role, ...]
    key_id: str | None = None  # the access key or API key the request was made with

    def has_role(self, role: Role) -> bool:
        return role in self.roles
