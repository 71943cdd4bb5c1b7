"""The console in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium against a gateway with real traffic from boto3.

Without the browser these tests skip, saying so; under CI=true a missing browser fails
them (.ci/run installs it). Each page's screenshot is written to var/screenshots/.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.app import create_app
from gateway.audit.checkpoint import SignedTreeState, Signer
from gateway.auth.principals import Role
from gateway.serving import BackgroundServer
from refvendor import samples
from tests.e2e.conftest import REPO, Stack, gateway_settings

CHROMIUM = Path(os.environ.get("FACEGATE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FACEGATE_CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = REPO / "var" / "screenshots"
WAIT_SECONDS = 20


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """One database kind: the browser checks pages, the HTTP tests cover both kinds."""
    return sqlite_url


class ProofTamperer:
    """A test-only hook in front of the gateway: while ``mode`` is set, the JSON of every
    console proof answer is altered on its way out, as a compromised server would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.mode: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or self.mode is None or not path.endswith("/proof"):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            altered = json.dumps(self.alter(json.loads(body))).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(altered)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": altered})

        await self.app(scope, receive, capture)

    def alter(self, proof: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "hash":  # one sibling hash of the path replaced
            proof["proof"]["hashes"][0] = "A" * 43 + "="
        elif self.mode == "leaf":  # the record rewritten, its proof left as it was
            leaf = json.loads(proof["leaf"])
            leaf["request_id"] = "0" * 32
            proof["leaf"] = json.dumps(leaf, separators=(",", ":"), sort_keys=True)
        elif self.mode == "checkpoint":  # the signed note's root line rewritten
            origin, size, _root, rest = proof["checkpoint"].split("\n", 3)
            proof["checkpoint"] = "\n".join([origin, size, "A" * 43 + "=", rest])
        return proof


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = (
            f"the console's browser tests need Chromium ({CHROMIUM}) and its driver"
            f" ({CHROMEDRIVER}): apt-get install chromium chromium-driver"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    # An explicit driver path: Selenium Manager downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def console(
    migrated_database_url: str, tmp_path: Path, vendor: BackgroundServer
) -> AsyncIterator[tuple[Stack, ProofTamperer]]:
    """A gateway (behind the tampering hook, off until a test turns it on) with traffic:
    searches allowed under a warrant and refused without one."""
    settings = gateway_settings(migrated_database_url, tmp_path, vendor.url)

    # A log key whose base64 holds a "+", the key string's own separator: the browser must
    # split the key string at its first two only (a random key has one half the time).
    def key_base64() -> str:
        signer = Signer.load_or_create(settings.log_key_file, settings.log_origin)
        return str(signer.verifier).split("+", 2)[2]

    while "+" not in key_base64():
        settings.log_key_file.unlink()
        SignedTreeState.beside(settings.log_key_file).path.unlink()
    tamperer = ProofTamperer(create_app(settings))
    with BackgroundServer(tamperer) as gateway:
        stack = Stack(settings=settings, url=gateway.url, vendor=vendor)
        await stack.warrant("W-1")
        allowed = stack.rekognition(await stack.session(warrant_id="W-1"))
        # Each request differs (a signed request is accepted once).
        for threshold in (80, 85, 90):
            allowed.search_faces_by_image(
                CollectionId="mugshots",
                Image={"Bytes": samples.astronaut_variant_jpeg()},
                FaceMatchThreshold=threshold,
            )
        refused = stack.rekognition(
            await stack.session("officer-2", case_number=None, warrant_id=None, legal_basis=None)
        )
        for threshold in (80, 85):
            with pytest.raises(refused.exceptions.AccessDeniedException):
                refused.search_faces_by_image(
                    CollectionId="mugshots",
                    Image={"Bytes": samples.astronaut_variant_jpeg()},
                    FaceMatchThreshold=threshold,
                )
        yield stack, tamperer


def wait_for(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def find(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def sign_in(driver: Any, url: str, key: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/console/")
    field = wait_for(driver, "input[name=api_key]")
    field.send_keys(key)
    find(driver, "#sign-in").click()
    wait_for(driver, "#sign-out")


def sign_out(driver: Any) -> None:
    find(driver, "#sign-out").click()
    wait_for(driver, "input[name=api_key]")


def drawn_pixels(driver: Any, canvas_id: str) -> int:
    return int(
        driver.execute_script(
            """const c = document.getElementById(arguments[0]);
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;""",
            canvas_id,
        )
    )


def only_from(driver: Any, origin: str) -> list[str]:
    """Every resource the page loaded, asserted to come from facegate itself."""
    urls = [
        str(url)
        for url in driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
    ]
    assert urls, "the page loaded no resources"
    assert all(url.startswith(origin + "/") for url in urls), urls
    return urls


def verdict(driver: Any) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: find(d, "#verify-status").get_attribute("class") != "pending"
    )
    return str(find(driver, "#verify-status").text)


async def test_auditor_reads_the_log_and_checks_a_proof_in_the_browser(
    browser: Any, console: tuple[Stack, ProofTamperer]
) -> None:
    stack, tamperer = console
    key = await stack.principal("auditor-b1", Role.AUDITOR)

    browser.get(f"{stack.url}/console/")
    wait_for(browser, "label[for=api_key]")
    shot(browser, "sign-in")
    sign_in(browser, stack.url, key)

    # The dashboard: charts drawn by the vendored Chart.js, counted from the log.
    assert browser.current_url.endswith("/console/dashboard")
    wait_for(browser, "canvas[data-drawn=true]")
    assert int(find(browser, "#n-searches").text) == 5
    for chart in ("searches_by_week", "refusals_by_reason", "identifications_by_basis"):
        assert drawn_pixels(browser, f"chart-{chart}") > 500, chart
    assert find(browser, "#checkpoint-server").text == "verified"
    assert find(browser, "#misuse-none")  # the refusals here are for missing case facts
    assert only_from(browser, stack.url)
    shot(browser, "dashboard")
    browser.set_window_size(820, 1180)  # a tablet, portrait
    shot(browser, "dashboard-tablet")
    browser.set_window_size(1280, 900)

    # The explorer: filtered to decisions, paged 25 at a time.
    browser.get(f"{stack.url}/console/audit")
    from selenium.webdriver.support.ui import Select

    Select(find(browser, "#f-decision")).select_by_visible_text("deny")
    find(browser, "#apply-filters").click()
    wait_for(browser, "table.records")
    denied = [td.text for td in browser.find_elements("css selector", "td.deny")]
    assert denied and set(denied) == {"deny"}
    shot(browser, "audit-explorer")
    browser.get(f"{stack.url}/console/audit?limit=5")
    first_page = [a.text for a in browser.find_elements("css selector", "a.seq")]
    assert first_page == ["1", "2", "3", "4", "5"]
    find(browser, "#next-page").click()
    wait_for(browser, "#first-page")
    second_page = [a.text for a in browser.find_elements("css selector", "a.seq")]
    assert second_page == ["6", "7", "8", "9", "10"]

    # A record: its proof checked here, with WebCrypto, against the signed checkpoint.
    browser.get(f"{stack.url}/console/audit/3")
    assert verdict(browser).startswith("Verified in this browser"), find(
        browser, "#verify-steps"
    ).text
    assert "checkpoint's Ed25519 signature verifies" in find(browser, "#verify-steps").text
    shot(browser, "record-verified")

    tamperer.mode = "hash"
    browser.get(f"{stack.url}/console/audit/3")
    assert verdict(browser).startswith("FAILED"), find(browser, "#verify-steps").text
    shot(browser, "record-failed")
    tamperer.mode = "leaf"
    browser.get(f"{stack.url}/console/audit/3")
    failed = verdict(browser)
    assert failed.startswith("FAILED") and "request_id" in failed
    tamperer.mode = "checkpoint"
    browser.get(f"{stack.url}/console/audit/3")
    failed = verdict(browser)
    assert failed.startswith("FAILED") and "signature" in failed
    tamperer.mode = None
    browser.get(f"{stack.url}/console/audit/3")
    assert verdict(browser).startswith("Verified")

    # A case's timeline, the vendors.
    browser.get(f"{stack.url}/console/cases?case_number=2026-HOM-0042")
    timeline = wait_for(browser, "#timeline")
    assert "decision" in timeline.text and "outcome" in timeline.text
    shot(browser, "case-timeline")
    browser.get(f"{stack.url}/console/vendors")
    assert "days old" in wait_for(browser, "#vendors").text
    shot(browser, "vendors")

    # A page for admins only: refused, on record.
    browser.get(f"{stack.url}/console/policy")
    assert "permission_denied" in wait_for(browser, "#refusal").text
    shot(browser, "refused")

    browser.get(f"{stack.url}/console/dashboard")
    sign_out(browser)
    browser.get(f"{stack.url}/console/dashboard")
    wait_for(browser, "input[name=api_key]")  # sent back to sign in


async def test_admin_pages_and_refusals_in_the_browser(
    browser: Any, console: tuple[Stack, ProofTamperer]
) -> None:
    stack, _ = console
    admin_key = await stack.principal("admin-b2", Role.ADMIN)
    officer_key = await stack.principal("officer-b2", Role.OFFICER)

    # An officer has no console: refused at sign-in.
    browser.get(f"{stack.url}/console/")
    wait_for(browser, "input[name=api_key]").send_keys(officer_key)
    find(browser, "#sign-in").click()
    assert "auditors, admins and reviewers" in wait_for(browser, ".alert").text

    sign_in(browser, stack.url, admin_key)
    wait_for(browser, "canvas[data-drawn=true]")
    nav = find(browser, "header nav").text
    assert "Policy" in nav and "Warrants" in nav and "Audit explorer" not in nav

    browser.get(f"{stack.url}/console/warrants")
    assert "W-1" in wait_for(browser, "#warrants").text
    shot(browser, "warrants")
    browser.get(f"{stack.url}/console/policy")
    wait_for(browser, "#policy-cases")
    assert find(browser, "#cases-failed").text == "0 failed"
    first = [tr.text for tr in browser.find_elements("css selector", "#policy-cases tbody tr")]
    assert len(first) == 25
    shot(browser, "policy")
    find(browser, "#next-page").click()
    wait_for(browser, "#prev-page")
    second = [tr.text for tr in browser.find_elements("css selector", "#policy-cases tbody tr")]
    assert second and not set(second) & set(first)

    # A form posted without its CSRF token (as another site's page would): refused.
    browser.execute_script(
        """const f = document.createElement('form'); f.method = 'post';
           f.action = '/console/sign-out'; document.body.appendChild(f); f.submit();"""
    )
    assert "csrf_token_missing" in wait_for(browser, "#refusal").text
    browser.get(f"{stack.url}/console/audit")
    assert "permission_denied" in wait_for(browser, "#refusal").text

    browser.get(f"{stack.url}/console/warrants")
    sign_out(browser)

    # The OpenAPI page renders from facegate's own files.
    browser.get(f"{stack.url}/docs")
    assert "facegate" in wait_for(browser, ".swagger-ui .info .title").text
    shot(browser, "docs")
    assert only_from(browser, stack.url)
