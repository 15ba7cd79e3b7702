"""A curator drives the annotation pages in a real headless Chromium.

Debian's Chromium through Playwright, never a downloaded browser; a missing
browser fails the test (tools/install-system-deps.sh installs it). The last
screen is saved under test-artifacts/ for the CI run's artifacts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, expect, sync_playwright

from annotations.models import Annotation
from tests.annotation_helpers import make_product, make_user

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
]
ARTIFACTS = settings.BASE_DIR / "test-artifacts"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless. Playwright's sync API runs an event loop on
    this thread, so the ORM must not be used while it is open (Django would
    refuse, or open a second connection that outlives the test)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run tools/install-system-deps.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def test_a_curator_logs_in_adds_and_edits_an_annotation_and_sees_both_versions(
    live_server, transactional_db
):
    make_user("curator", staff=True)
    product = make_product()
    product_url = live_server.url + product.get_absolute_url()
    on_product_page = re.compile("^" + re.escape(product_url) + r"(#[\w-]+)?$")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(15_000)
        try:
            page.goto(f"{live_server.url}/admin/login/?next={product.get_absolute_url()}")
            page.fill("#id_username", "curator")
            page.fill("#id_password", "correct horse battery")
            page.click("input[type=submit]")

            expect(page).to_have_url(on_product_page)
            expect(page.locator("h1")).to_have_text("eb-m001-20230921-245")
            expect(page.locator("#files")).to_contain_text("pst-low/245/data")

            page.fill("#add-annotation textarea", "RFI visible in scan 3.")
            page.click("#add-annotation button[type=submit]")
            annotation = page.locator("article.annotation")
            expect(annotation.locator(".current")).to_have_text("RFI visible in scan 3.")

            annotation.get_by_role("link", name="Edit").click()
            expect(page.locator("#edit-annotation textarea")).to_have_value(
                "RFI visible in scan 3."
            )
            page.fill("#edit-annotation textarea", "RFI visible in scans 3 and 4.")
            page.click("#edit-annotation button[type=submit]")

            expect(page).to_have_url(on_product_page)
            expect(annotation.locator(".current")).to_have_text("RFI visible in scans 3 and 4.")
            expect(annotation.locator(".history summary")).to_have_text(
                "Edit history (1 earlier version)"
            )
            expect(annotation.locator(".revision .text")).to_have_text("RFI visible in scan 3.")
        finally:
            page.screenshot(path=str(ARTIFACTS / "annotation-history.png"), full_page=True)

    saved = Annotation.objects.get()
    assert saved.user_principal_name == "curator@skao.int"
    assert [r.annotation_text for r in saved.revisions.all()] == ["RFI visible in scan 3."]
