"""The home page in a real headless Chromium while a real indexing run goes:
the progress bar moves without a reload, and once the run ends the page
reloads itself and draws the products-per-month chart.

The run is `manage.py reindex` in its own process on this test's database,
slowed per batch by INDEXING_TEST_BATCH_DELAY_SECONDS (a test-only knob) so
that the browser sees it in progress; the page is served by the test's
live server. Debian's Chromium through Playwright, never a downloaded browser.
"""

from __future__ import annotations

import pytest
from django.db import connection
from playwright.sync_api import expect

from dpd.synthetic import write_synthetic_volume
from indexing.models import IndexingState
from tests.service_processes import running_services, unavailable, wait_for
from tests.test_browser_annotations import chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_home_page_follows_a_run_then_shows_the_chart(
    live_server, transactional_db, tmp_path, settings
):
    if connection.vendor != "postgresql":
        unavailable("the indexing process needs PostgreSQL (DATABASE_URL)")
    volume = tmp_path / "volume"
    volume.mkdir()
    settings.PERSISTENT_STORAGE_PATH = str(volume)
    files = write_synthetic_volume(volume, 50)
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()

    with running_services(
        volume,
        tmp_path,
        INDEXING_BATCH_SIZE="5",
        INDEXING_PARALLEL_WORKERS="1",
        INDEXING_TEST_BATCH_DELAY_SECONDS="0.75",
    ) as services:
        indexer = services.command("indexer", "reindex")
        wait_for(
            lambda: (
                IndexingState.objects.filter(indexing_running=True, total_files__gt=0).exists()
                or not indexer.alive()
            ),
            timeout=60,
            what="the run to start",
        )
        assert indexer.alive(), indexer.output()

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            try:
                page.goto(live_server.url + "/")
                indexing = page.locator("#indexing")
                expect(indexing).to_have_attribute("data-running", "true")
                expect(page.locator("#indexing-bar")).to_be_visible()
                first = int(indexing.get_attribute("data-processed"))
                page.evaluate("window.notReloaded = true")

                # The script moves the bar as /status reports the run's batches.
                page.wait_for_function(
                    "first => Number(document.getElementById('indexing').dataset.processed) > first"
                    " && Number(document.getElementById('indexing-bar').value) > first",
                    arg=first,
                )
                assert page.evaluate("window.notReloaded") is True
                page.screenshot(path=str(screenshots / "home-indexing.png"), full_page=True)

                # Once the run is over the page reloads itself with the new figures.
                expect(indexing).to_have_attribute("data-running", "false", timeout=120_000)
                assert page.evaluate("window.notReloaded === undefined")
                expect(page.locator("#products-total")).not_to_have_attribute("data-count", "0")
                bars = page.locator("#per-month-chart rect.bar")
                assert bars.count() > 12
                box = page.locator("#per-month-chart").bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 80
                expect(page.locator("#indexing-text")).to_contain_text(f"of {files} files")
            finally:
                page.screenshot(path=str(screenshots / "home.png"), full_page=True)

        assert indexer.popen.wait(timeout=60) == 0, indexer.output()

    assert (screenshots / "home.png").stat().st_size > 10_000
