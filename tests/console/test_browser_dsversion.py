"""The dataset version page in a real headless Chromium: open it from the datasets list, see
the distribution chart and the gallery, scroll for more, filter by label, open an image's
details, select two images (the second with shift for a range), exclude them and land on
the new version with its diff. Screenshots to $AUTOVISION_SCREENSHOTS (or tmp)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from ._helpers import PASSWORD
from .test_browser import CHROMIUM, CHROMIUM_ARGS, console_url, shots  # noqa: F401 - fixtures
from .test_dsversion import XSS, make_items

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def images_loaded(page, selector: str, n: int, timeout: float = 20) -> None:
    """Wait until the first ``n`` images of ``selector`` have loaded (polled from here:
    the page's CSP forbids the eval that ``wait_for_function`` needs)."""
    script = (
        f"Array.from(document.querySelectorAll({selector!r})).slice(0, {n})"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )
    end = time.monotonic() + timeout
    while page.evaluate(script) < n:
        assert time.monotonic() < end, f"{selector}: images did not load"
        time.sleep(0.05)


def test_distribution_gallery_filter_select_and_exclude(console_url, workspace, shots):  # noqa: F811
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (make system-deps)")
    from playwright.sync_api import expect, sync_playwright

    from autovision.console.auth import create_user

    url, _ = console_url
    create_user(workspace, "maria", "trainer", PASSWORD)
    workspace.create_version("pets", make_items(workspace, 150), multi_label=False)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "maria")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{url}/datasets")
            page.click("#datasets-table a:text-is('pets')")
            expect(page).to_have_url(f"{url}/datasets/pets/1")

            expect(page.locator("svg.bar-chart")).to_be_visible()
            expect(page.locator("svg.bar-chart")).to_contain_text(XSS)  # as text
            expect(page.locator(".tile")).to_have_count(60)
            expect(page.locator(".gallery-total")).to_contain_text("150 images")
            images_loaded(page, ".tile img", 12)
            page.screenshot(path=str(shots / "dsv-01-version.png"), full_page=False)

            # Infinite scroll: the last tile, once revealed, brings the next page.
            expect(page.locator("select[name=issue]")).to_be_enabled()  # issues found
            expect(page.locator(".tile")).to_have_count(60)
            page.locator(".tile").last.scroll_into_view_if_needed()
            expect(page.locator(".tile")).to_have_count(120)

            page.select_option("select[name=label]", "dog")
            expect(page).to_have_url(f"{url}/datasets/pets/1?label=dog")
            expect(page.locator(".gallery-total")).to_contain_text("49 images match")
            expect(page.locator(".tile")).to_have_count(49)
            labels = page.locator(".tile .tile-label").all_inner_texts()
            assert set(labels) == {"dog"}

            page.locator(".tile-open").nth(2).click()
            panel = page.locator("#detail")
            expect(panel).to_contain_text("Image #")
            expect(panel).to_contain_text("16 × 16 px")
            page.screenshot(path=str(shots / "dsv-02-filtered-detail.png"), full_page=False)
            page.click("#detail-close")
            expect(panel.locator(".detail")).to_have_count(0)

            first, third = page.locator(".tile").nth(0), page.locator(".tile").nth(1)
            ids = [first.get_attribute("data-id"), third.get_attribute("data-id")]
            first.locator("input[type=checkbox]").click()
            third.locator("input[type=checkbox]").click(modifiers=["Shift"])
            expect(page.locator("#sel-n")).to_have_text("2")
            expect(page.locator("#btn-exclude")).to_be_enabled()
            page.screenshot(path=str(shots / "dsv-03-selected.png"), full_page=False)
            page.click("#btn-exclude")

            expect(page).to_have_url(f"{url}/datasets/pets/2")
            diff = page.locator("#diff")
            expect(diff).to_contain_text("Changes from @1")
            expect(diff).to_contain_text("2 removed")
            expect(diff.locator(".diff-tile")).to_have_count(2)
            expect(page.locator(".gallery-total")).to_contain_text("148 images")
            images_loaded(page, ".diff-tile img", 2)
            page.screenshot(path=str(shots / "dsv-04-new-version-diff.png"), full_page=True)

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.on("pageerror", lambda e: problems.append(str(e)))
            phone.context.add_cookies(page.context.cookies())
            phone.goto(f"{url}/datasets/pets/2")
            expect(phone.locator(".tile").first).to_be_visible()
            phone.screenshot(path=str(shots / "dsv-05-phone.png"), full_page=False)
        finally:
            browser.close()
    assert problems == []
    removed = {int(i) for i in ids}
    assert removed.isdisjoint(workspace.dataset("pets@2").by_id())
    assert removed <= set(workspace.dataset("pets@1").by_id())
