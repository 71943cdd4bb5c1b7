"""The console's guarantees over plain HTTP: sessions, CSRF, roles, records, offline /docs.

The browser-level behaviour (charts, in-browser proof checks) is in test_console_browser.py.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from gateway.auth.principals import Role
from gateway.auth.secrets import digest_token
from gateway.db import create_engine
from tests.e2e.conftest import Stack
from tests.e2e.test_management_api import api

JSON_COLUMNS = {"detail", "reason_codes", "obligations", "probe_digests"}


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def sign_in(stack: Stack, key: str) -> httpx.AsyncClient:
    """A client with a console session for ``key`` (its cookies, as a browser keeps them)."""
    client = httpx.AsyncClient(base_url=stack.url, follow_redirects=False)
    form = await client.get("/console/")
    assert form.status_code == 200 and 'name="api_key"' in form.text
    answer = await client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": form_token(form.text)}
    )
    assert answer.status_code == 303, answer.text
    return client


async def records(stack: Stack, **where: Any) -> list[dict[str, Any]]:
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(sa.text("SELECT * FROM audit_log ORDER BY seq"))
            ).mappings()
            decoded = [
                {k: json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v
                 for k, v in row.items()}
                for row in rows
            ]  # fmt: skip
            return [r for r in decoded if all(r[k] == v for k, v in where.items())]
    finally:
        await engine.dispose()


async def test_sign_in_gives_a_strict_httponly_session_and_stores_only_its_digest(
    stack: Stack,
) -> None:
    key = await stack.principal("auditor-c1", Role.AUDITOR)
    client = await sign_in(stack, key)
    cookie = next(
        c for c in client.cookies.jar if c.name == "facegate_console"
    )  # the session cookie
    header = (await client.get("/console/")).request.headers.get("cookie", "")
    assert "facegate_console=" in header
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
    assert cookie.expires is not None  # an expiry, not a browser-lifetime cookie
    assert not cookie.secure  # plain http here; see the TLS test below

    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.connect() as connection:
            stored = (
                (await connection.execute(sa.text("SELECT token_digest FROM console_sessions")))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert cookie.value is not None
    assert stored == [digest_token(cookie.value)]
    assert cookie.value not in stored
    assert (await records(stack, officer="auditor-c1", event_type="admin_action"))[-1]["detail"][
        "action"
    ] == "console.sign_in"


async def test_cookie_is_secure_when_the_browser_came_over_tls(stack: Stack) -> None:
    """uvicorn turns X-Forwarded-Proto from a proxy it trusts into the request's scheme
    (this test server trusts loopback, uvicorn's default); which proxies the console
    trusts itself is tested in tests/console/test_cookies.py."""
    client = httpx.AsyncClient(base_url=stack.url)
    plain = await client.get("/console/")
    assert "secure" not in plain.headers["set-cookie"].lower()
    tls = await client.get("/console/", headers={"x-forwarded-proto": "https"})
    assert "; secure" in tls.headers["set-cookie"].lower()


async def test_refused_sign_ins_are_recorded(stack: Stack) -> None:
    officer_key = await stack.principal("officer-c3", Role.OFFICER)
    client = httpx.AsyncClient(base_url=stack.url)
    token = form_token((await client.get("/console/")).text)

    bad = await client.post(
        "/console/sign-in", data={"api_key": "fgk_nope.nope", "csrf_token": token}
    )
    assert bad.status_code == 403 and "facegate_console=" not in bad.headers.get("set-cookie", "")
    # Each answer is a fresh form, with a fresh token (and cookie) to sign in with.
    token = form_token(bad.text)
    attempt = {"api_key": officer_key, "csrf_token": token}
    officer = await client.post("/console/sign-in", data=attempt)
    assert officer.status_code == 403
    stale = await client.post("/console/sign-in", data=attempt)
    assert stale.status_code == 403
    no_csrf = await client.post("/console/sign-in", data={"api_key": officer_key})
    assert no_csrf.status_code == 403

    failures = await records(stack, event_type="auth_failure")
    codes = [(r["reason_codes"], r["officer"]) for r in failures if r["detail"].get("via")]
    assert (["unknown_access_key"], None) in codes
    assert (["console_role_missing"], "officer-c3") in codes
    assert (["csrf_token_invalid"], None) in codes
    assert (["csrf_token_missing"], None) in codes


async def test_a_form_post_without_the_sessions_csrf_token_is_refused_on_record(
    stack: Stack,
) -> None:
    key = await stack.principal("auditor-c4", Role.AUDITOR)
    client = await sign_in(stack, key)
    page = await client.get("/console/dashboard")
    assert page.status_code == 200

    refused = await client.post("/console/sign-out", data={})
    assert refused.status_code == 403 and "csrf_token_missing" in refused.text
    wrong = await client.post("/console/sign-out", data={"csrf_token": "forged"})
    assert wrong.status_code == 403 and "csrf_token_invalid" in wrong.text
    assert (await client.get("/console/dashboard")).status_code == 200  # still signed in

    failures = await records(stack, event_type="auth_failure", officer="auditor-c4")
    assert [r["reason_codes"] for r in failures] == [["csrf_token_missing"], ["csrf_token_invalid"]]

    signed_out = await client.post("/console/sign-out", data={"csrf_token": form_token(page.text)})
    assert signed_out.status_code == 303
    again = await client.get("/console/dashboard")
    assert again.status_code == 303 and again.headers["location"] == "/console/"


async def test_a_page_for_another_role_is_refused_on_record(stack: Stack) -> None:
    auditor = await sign_in(stack, await stack.principal("auditor-c5", Role.AUDITOR))
    admin = await sign_in(stack, await stack.principal("admin-c5", Role.ADMIN))

    assert (await auditor.get("/console/policy")).status_code == 403
    assert (await auditor.get("/console/warrants")).status_code == 403
    assert (await admin.get("/console/audit")).status_code == 403
    assert (await admin.get("/console/audit/1/proof")).status_code == 403
    assert (await admin.get("/console/cases")).status_code == 403
    assert (await admin.get("/console/policy")).status_code == 200
    assert (await auditor.get("/console/audit")).status_code == 200

    refused = await records(stack, event_type="auth_failure")
    by = sorted((r["officer"], r["detail"]["route"]) for r in refused)
    assert by == [
        ("admin-c5", "/console/audit"),
        ("admin-c5", "/console/audit/1/proof"),
        ("admin-c5", "/console/cases"),
        ("auditor-c5", "/console/policy"),
        ("auditor-c5", "/console/warrants"),
    ]


async def test_every_page_showing_audit_data_is_a_recorded_read(stack: Stack) -> None:
    auditor = await sign_in(stack, await stack.principal("auditor-c6", Role.AUDITOR))
    for path in ("/console/dashboard", "/console/audit", "/console/audit/1", "/console/cases"):
        assert (await auditor.get(path)).status_code == 200, path
    assert (await auditor.get("/console/audit/1/proof")).status_code == 200
    reads = await records(stack, event_type="audit_read", officer="auditor-c6")
    assert [r["detail"]["action"] for r in reads] == [
        "console.dashboard",
        "audit.list",
        "audit.record",
        "audit.case_list",
        "audit.inclusion_proof",
    ]
    assert all(r["detail"]["via"] == "console" for r in reads)


async def test_revoking_the_key_ends_its_console_session(stack: Stack) -> None:
    admin_key = await stack.principal("admin-c7", Role.ADMIN)
    auditor_key = await stack.principal("auditor-c7", Role.AUDITOR)
    client = await sign_in(stack, auditor_key)
    assert (await client.get("/console/dashboard")).status_code == 200
    key_id = auditor_key.removeprefix("fgk_").split(".")[0]
    revoked = api(
        stack, "POST", f"/facegate/v1/principals/auditor-c7/keys/{key_id}/revoke", admin_key
    )
    assert revoked.status_code == 200, revoked.text
    assert (await client.get("/console/dashboard")).status_code == 303


async def test_docs_page_loads_nothing_from_another_host(stack: Stack) -> None:
    client = httpx.AsyncClient(base_url=stack.url)
    page = await client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page.text)
    assert sources, "the page loads no assets at all"
    assert all(s.startswith("/") and not s.startswith("//") for s in sources), sources
    assert "https://" not in page.text and "http://" not in page.text
    for asset in sources:
        assert (await client.get(asset)).status_code == 200, asset
    assert (await client.get("/openapi.json")).json()["paths"]


async def test_an_expired_session_is_refused_by_the_server(stack: Stack) -> None:
    key = await stack.principal("auditor-c8", Role.AUDITOR)
    stack.settings.console_session_ttl = timedelta(0)  # the running gateway's own settings
    client = httpx.AsyncClient(base_url=stack.url)
    form = await client.get("/console/")
    answer = await client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf_token": form_token(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    setting = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and "console=" in v
    )
    token = setting.split(";")[0].split("=", 1)[1]
    # The browser would drop the cookie at once; one that keeps it gets nothing either.
    stale = await client.get(
        "/console/dashboard",
        headers={"cookie": f"facegate_console={token}"},
        follow_redirects=False,
    )
    assert stale.status_code == 303 and stale.headers["location"] == "/console/"


async def test_sign_in_and_sign_out_are_on_record(stack: Stack) -> None:
    client = await sign_in(stack, await stack.principal("auditor-c9", Role.AUDITOR))
    page = await client.get("/console/dashboard")
    await client.post("/console/sign-out", data={"csrf_token": form_token(page.text)})
    actions = await records(stack, event_type="admin_action", officer="auditor-c9")
    assert [r["detail"]["action"] for r in actions] == ["console.sign_in", "console.sign_out"]


async def test_a_reviewer_lands_on_the_review_queue(stack: Stack) -> None:
    client = await sign_in(stack, await stack.principal("reviewer-c10", Role.REVIEWER))
    home = await client.get("/console/")
    assert home.status_code == 303 and home.headers["location"] == "/console/review"
    queue = await client.get("/console/review")
    assert queue.status_code == 200 and 'id="sign-out"' in queue.text
    assert (await client.get("/console/dashboard")).status_code == 403


async def test_a_read_that_cannot_be_recorded_is_not_served(stack: Stack) -> None:
    auditor = await sign_in(stack, await stack.principal("auditor-c11", Role.AUDITOR))
    assert (await auditor.get("/console/audit")).status_code == 200
    engine = create_engine(stack.settings.database_url)
    try:
        async with engine.begin() as connection:
            # The append writes tree nodes; the pages' own queries read audit_log only, so
            # only the read's record fails here, and with it the page.
            await connection.execute(sa.text("ALTER TABLE audit_tree RENAME TO audit_tree_away"))
        for path in ("/console/dashboard", "/console/audit", "/console/audit/1", "/console/policy"):
            answer = await auditor.get(path)  # the last is a refusal: refused unrecorded, 503
            assert answer.status_code == 503, (path, answer.status_code)
            assert "audit_unavailable" in answer.text and "<table" not in answer.text
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE audit_tree_away RENAME TO audit_tree"))
        await engine.dispose()
    assert (await auditor.get("/console/audit")).status_code == 200


async def test_explorer_filters_and_bad_input(stack: Stack) -> None:
    auditor = await sign_in(stack, await stack.principal("auditor-c12", Role.AUDITOR))
    allowed = await auditor.get("/console/audit", params={"event_type": "audit_read"})
    assert allowed.status_code == 200
    rows = re.findall(r'<tr>\s*<td><a href="/console/audit/(\d+)"', allowed.text)
    assert (
        rows
        and "<td>audit_read</td>" in allowed.text
        and "<td>admin_action</td>" not in (allowed.text)
    )
    reversed_window = await auditor.get(
        "/console/audit",
        params={"time_from": "2026-12-01T00:00", "time_until": "2026-11-01T00:00"},
    )
    assert reversed_window.status_code == 400 and "time_from" in reversed_window.text
    forged = await auditor.get("/console/audit", params={"cursor": "not-a-cursor"})
    assert forged.status_code == 400 and "cursor" in forged.text


async def test_a_malformed_query_parameter_gets_a_console_page_not_json(stack: Stack) -> None:
    """A browser user who edits a page's address (a limit of 0, a page that is no number)
    gets the console's own error page naming the parameter, not the API's JSON."""
    auditor = await sign_in(stack, await stack.principal("auditor-c13", Role.AUDITOR))
    admin = await sign_in(stack, await stack.principal("admin-c13", Role.ADMIN))
    for viewer, path, params in (
        (auditor, "/console/audit", {"limit": "0"}),
        (auditor, "/console/audit", {"limit": "many"}),
        (admin, "/console/warrants", {"page": "first"}),
    ):
        answer = await viewer.get(path, params=params)
        assert answer.status_code == 400, (path, params, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), answer.text
        (name,) = params
        assert name in answer.text and 'id="refusal"' in answer.text
    # Signed out, the same address still leads to the sign-in page first.
    async with httpx.AsyncClient(base_url=stack.url, follow_redirects=False) as stranger:
        signed_out = await stranger.get("/console/audit", params={"limit": "0"})
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/console/"
    # Outside the console, the API keeps its JSON.
    api_answer = await auditor.get("/facegate/audit/records", params={"limit": "many"})
    assert api_answer.headers["content-type"].startswith("application/json")
