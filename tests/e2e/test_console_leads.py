"""The console's review queue, reports, disclosure packets and authorisation decisions in a
real browser (headless Chromium, see test_console_browser.py), against a gateway whose
leads come from real boto3 searches. Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import zipfile
from datetime import UTC, date, datetime
from io import BytesIO
from typing import Any

from selenium.webdriver.support.ui import Select, WebDriverWait

from gateway.auth.principals import Role
from gateway.case import LegalBasis
from tests.e2e.conftest import CASE, Stack
from tests.e2e.test_console_browser import (
    WAIT_SECONDS,
    browser,  # noqa: F401  (a fixture)
    database_url,  # noqa: F401  (a fixture)
    find,
    shot,
    sign_in,
    sign_out,
    wait_for,
)
from tests.e2e.test_leads import api, boto_search, enrol, records


def queue_ids(driver: Any) -> set[str]:
    sections = driver.find_elements("css selector", "section.lead")
    return {str(s.get_attribute("id")).removeprefix("lead-") for s in sections}


def give_verdict(driver: Any, lead: str, verdict: str, rationale: str) -> str:
    section = find(driver, f"#lead-{lead}")
    section.find_element("css selector", f"input[name=verdict][value={verdict}]").click()
    section.find_element("css selector", "textarea[name=rationale]").send_keys(rationale)
    section.find_element("css selector", "button[type=submit]").click()
    return str(wait_for(driver, "#review-outcome").text)


def post_without_csrf(driver: Any, action: str, **fields: str) -> None:
    """A form another site's page could post: every field but the CSRF token."""
    driver.execute_script(
        """const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
           for (const [k, v] of Object.entries(arguments[1])) {
             const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
           }
           document.body.appendChild(f); f.submit();""",
        action,
        fields,
    )


async def test_two_reviewers_verify_a_lead_in_the_browser(browser: Any, stack: Stack) -> None:  # noqa: F811
    await stack.warrant("W-1")
    # The searching officer is a trained reviewer too: its own search is not offered to it.
    searcher = await enrol(stack, "officer-1", Role.OFFICER, Role.REVIEWER)
    examiner_1 = await enrol(stack, "examiner-1", Role.REVIEWER)
    examiner_2 = await enrol(stack, "examiner-2", Role.REVIEWER)
    auditor = await enrol(stack, "auditor-1", Role.AUDITOR)
    lapsed = await enrol(stack, "examiner-old", Role.REVIEWER, trained_until=date(2020, 1, 1))
    elsewhere = await enrol(stack, "examiner-far", Role.REVIEWER, agency="County SO")
    _, [lead] = boto_search(stack, stack.rekognition(await stack.session("officer-1")))

    # Training lapsed, another agency: the lead is not theirs to review, so not offered.
    for key in (lapsed, elsewhere):
        sign_in(browser, stack.url, key)
        browser.get(f"{stack.url}/console/review")
        wait_for(browser, "#queue-empty")
        assert lead not in queue_ids(browser)

    sign_in(browser, stack.url, searcher)
    browser.get(f"{stack.url}/console/review")
    wait_for(browser, "#withheld")
    assert lead not in queue_ids(browser)
    # Posted anyway, the verdict is judged by the same policy and refused on record.
    browser.get(f"{stack.url}/console/review")
    token = find(browser, "input[name=csrf_token]").get_attribute("value")
    browser.execute_script(
        """const f = document.createElement('form'); f.method = 'post';
           f.action = '/console/review/' + arguments[0];
           for (const [k, v] of [['csrf_token', arguments[1]], ['verdict', 'confirmed'],
                                 ['rationale', 'my own search']]) {
             const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
           }
           document.body.appendChild(f); f.submit();""",
        lead,
        token,
    )
    assert "refused: reviewer_is_searcher" in wait_for(browser, "#review-outcome").text
    sign_out(browser)

    sign_in(browser, stack.url, examiner_1)
    browser.get(f"{stack.url}/console/review")
    section = wait_for(browser, f"#lead-{lead}")
    candidate = api(stack, "GET", f"/facegate/v1/leads/{lead}", auditor).json()["candidate_id"]
    assert CASE in section.text and "officer-1" in section.text and candidate in section.text
    shot(browser, "review-queue")
    # Without the form's CSRF token: refused, on record, and nothing reviewed.
    post_without_csrf(browser, f"/console/review/{lead}", verdict="confirmed", rationale="x")
    assert "csrf_token_missing" in wait_for(browser, "#refusal").text
    browser.get(f"{stack.url}/console/review")
    outcome = give_verdict(browser, lead, "confirmed", "compared with the booking photo")
    assert outcome == f"Lead {lead}: pending"
    assert lead not in queue_ids(browser)  # reviewed by this examiner already
    sign_out(browser)

    sign_in(browser, stack.url, examiner_2)
    browser.get(f"{stack.url}/console/review")
    wait_for(browser, f"#lead-{lead}")
    assert give_verdict(browser, lead, "confirmed", "same scar") == f"Lead {lead}: verified"
    shot(browser, "review-verified")
    sign_out(browser)

    view = api(stack, "GET", f"/facegate/v1/leads/{lead}", auditor).json()
    assert view["status"] == "verified"
    assert [r["reviewer"] for r in view["reviews"]] == ["examiner-1", "examiner-2"]
    reviews = records(stack, auditor, event_type="lead_review")
    assert [(r["officer"], r["decision"]) for r in reviews] == [
        ("officer-1", "deny"),
        ("examiner-1", "allow"),
        ("examiner-2", "allow"),
    ]
    refusals = records(stack, auditor, event_type="auth_failure")
    assert [r["reason_codes"] for r in refusals] == [["csrf_token_missing"]]
    # The audit API's reason filter finds each refusal by its code.
    assert records(stack, auditor, reason_code="csrf_token_missing") == refusals
    [searcher_refused] = records(stack, auditor, reason_code="reviewer_is_searcher")
    assert searcher_refused["event_type"] == "lead_review"

    # The vendor's outcomes by similarity band count the verified lead.
    sign_in(browser, stack.url, auditor)
    browser.get(f"{stack.url}/console/vendors")
    rows = [tr.text for tr in browser.find_elements("css selector", "#outcomes tbody tr")]
    assert len(rows) == 1 and rows[0].split()[2] == "1", rows  # vendor, band, confirmed
    shot(browser, "vendors-outcomes")

    # An auditor has no review queue: the page is refused.
    browser.get(f"{stack.url}/console/review")
    assert "permission_denied" in wait_for(browser, "#refusal").text
    assert "Review queue" not in find(browser, "header nav").text


async def test_admin_decides_an_authorisation_and_makes_a_report(
    browser: Any,  # noqa: F811
    stack: Stack,
) -> None:
    admin = await enrol(stack, "admin-1", Role.ADMIN)
    auditor = await enrol(stack, "auditor-1", Role.AUDITOR)
    exigent = await stack.session(legal_basis=LegalBasis.EXIGENT, warrant_id=None)
    _, [lead] = boto_search(stack, stack.rekognition(exigent))
    [opened] = api(stack, "GET", "/facegate/v1/authorisations", auditor).json()

    sign_in(browser, stack.url, admin)
    browser.get(f"{stack.url}/console/warrants")
    row = wait_for(browser, f"#auth-{opened['id']}")
    assert "pending (clock running)" in row.text and "exigent" in row.text
    # The decision form without its CSRF token: refused, and the clock still runs.
    post_without_csrf(
        browser,
        f"/console/warrants/authorisations/{opened['id']}/decision",
        decision="refused",
        authority="x",
        reference="y",
    )
    assert "csrf_token_missing" in wait_for(browser, "#refusal").text
    browser.get(f"{stack.url}/console/warrants")
    row = wait_for(browser, f"#auth-{opened['id']}")
    Select(row.find_element("css selector", "select[name=decision]")).select_by_value("granted")
    row.find_element("css selector", "input[name=authority]").send_keys("Judge Doe")
    row.find_element("css selector", "input[name=reference]").send_keys("EX-2026-7")
    shot(browser, "warrants-decision")
    row.find_element("css selector", "button[type=submit]").click()
    assert "granted" in wait_for(browser, "#decision-outcome").text
    assert "Judge Doe, EX-2026-7 (admin-1)" in find(browser, f"#auth-{opened['id']}").text
    assert api(stack, "GET", f"/facegate/v1/leads/{lead}", auditor).json()["status"] == "pending"
    [decided] = api(stack, "GET", "/facegate/v1/authorisations", auditor).json()
    assert (decided["state"], decided["authority"]) == ("granted", "Judge Doe")

    # A report: previewed as its printable page, then downloaded through the same form.
    year = str(datetime.now(UTC).year)
    browser.get(f"{stack.url}/console/reports")
    form = wait_for(browser, "#template-transparency form")
    shot(browser, "reports")
    downloaded = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
           const body = new FormData(document.querySelector('#template-transparency form'));
           body.set('format', 'csv'); body.set('audience', 'oversight');
           fetch('/console/reports', {method: 'POST', body}).then(async r =>
             done([r.status, r.headers.get('content-disposition'), await r.text()]));"""
    )
    status, disposition, text = downloaded
    assert status == 200, text
    assert disposition == f'attachment; filename="report-transparency-{year}-oversight.csv"'
    assert "searches" in text
    Select(form.find_element("css selector", "select[name=audience]")).select_by_value("public")
    form.find_element("css selector", "button[type=submit]").click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: "transparency report" in d.title.lower())
    assert "transparency report" in find(browser, "h1").text
    assert not browser.find_elements("css selector", "header nav")  # the report, not a page
    shot(browser, "report-preview")
    # The dashboard's misuse signals: the report made from the log, for this quarter.
    browser.get(f"{stack.url}/console/dashboard")
    wait_for(browser, "#misuse-report button").click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: "misuse signals" in d.title.lower())
    shot(browser, "misuse-signals")
    made = records(stack, auditor, event_type="report")
    made_here = [
        (r["officer"], r["detail"]["audience"], r["detail"]["via"])
        for r in made
        if r["detail"]["action"] == "report.make"
    ]
    assert made_here == [
        ("admin-1", "oversight", "console"),
        ("admin-1", "public", "console"),
        ("admin-1", "oversight", "console"),
    ]

    # The same report form, for a role without reports: refused even with a valid token.
    officer = await enrol(stack, "examiner-9", Role.REVIEWER)
    sign_in(browser, stack.url, officer)
    browser.get(f"{stack.url}/console/reports")
    assert "permission_denied" in wait_for(browser, "#refusal").text
    # Its own session's token, so only the role can refuse it.
    refused = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
           const body = new FormData();
           body.set('csrf_token', document.querySelector('input[name=csrf_token]').value);
           body.set('template', 'transparency'); body.set('period', arguments[0]);
           fetch('/console/reports', {method: 'POST', body}).then(async r =>
             done([r.status, await r.text()]));""",
        year,
    )
    assert refused[0] == 403 and "permission_denied" in refused[1]

    # A case's disclosure packet, from its timeline.
    sign_in(browser, stack.url, auditor)
    browser.get(f"{stack.url}/console/cases?case_number={CASE}")
    link = wait_for(browser, "#disclosure")
    shot(browser, "case-disclosure")
    packet = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
           fetch(arguments[0]).then(async r => done([r.status,
             Array.from(new Uint8Array(await r.arrayBuffer()))]));""",
        link.get_attribute("href"),
    )
    assert packet[0] == 200
    with zipfile.ZipFile(BytesIO(bytes(packet[1]))) as archive:
        names = archive.namelist()
    assert any(name.endswith("packet.json") for name in names), names

    # The explorer filters by legal basis (and reason code), as the audit API does.
    browser.get(f"{stack.url}/console/audit?legal_basis=exigent")
    wait_for(browser, "table.records")
    shown = [a.text for a in browser.find_elements("css selector", "a.seq")]
    exigent_records = records(stack, auditor, legal_basis="exigent")
    assert shown and shown == [str(r["seq"]) for r in exigent_records]
    assert {r["legal_basis"] for r in exigent_records} == {"exigent"}
    assert find(browser, "#f-legal_basis").get_attribute("value") == "exigent"
    assert find(browser, "label[for=f-reason_code]")
