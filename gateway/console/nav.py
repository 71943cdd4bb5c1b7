"""The console's pages and who may see each: one list, read by the navigation and by each
page's role check, so a link is offered exactly where the page would be served.

A new page (the review queue, reports) is one entry here, one route and one template.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth.principals import Role


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    path: str
    title: str
    roles: frozenset[Role]


def _page(name: str, path: str, title: str, *roles: Role) -> Page:
    return Page(name, path, title, frozenset(roles))


DASHBOARD = _page("dashboard", "/console/dashboard", "Dashboard", Role.AUDITOR, Role.ADMIN)
AUDIT = _page("audit", "/console/audit", "Audit explorer", Role.AUDITOR)
CASES = _page("cases", "/console/cases", "Cases", Role.AUDITOR)
VENDORS = _page("vendors", "/console/vendors", "Vendors", Role.AUDITOR, Role.ADMIN)
WARRANTS = _page("warrants", "/console/warrants", "Warrants", Role.ADMIN)
POLICY = _page("policy", "/console/policy", "Policy", Role.ADMIN)
REVIEW = _page("review", "/console/review", "Review queue", Role.REVIEWER)
REPORTS = _page("reports", "/console/reports", "Reports", Role.AUDITOR, Role.ADMIN)

PAGES: tuple[Page, ...] = (DASHBOARD, AUDIT, CASES, REVIEW, REPORTS, VENDORS, WARRANTS, POLICY)


def pages_for(roles: tuple[Role, ...]) -> list[Page]:
    return [page for page in PAGES if page.roles.intersection(roles)]
