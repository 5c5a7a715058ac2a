"""The console in a real headless Chromium (Playwright, Debian's chromium): log in, import a
zip, see the dataset in the list. Screenshots of each page go to $AUTOVISION_SCREENSHOTS
(or the test's tmp folder): look at them when the pages change."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._browser import CHROMIUM, CHROMIUM_ARGS, need_chromium, screenshots_dir, serve
from ._helpers import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def console_url(workspace):
    """A real console server (uvicorn in a thread) on a free loopback port."""
    with serve(workspace) as running:
        yield running


@pytest.fixture
def shots(tmp_path) -> Path:
    return screenshots_dir(tmp_path)


def test_log_in_import_a_zip_and_see_it_listed(console_url, workspace, class_zip, shots, tmp_path):
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from autovision.console.auth import create_user

    url, app = console_url
    create_user(workspace, "maria", "trainer", PASSWORD)
    archive = tmp_path / "leaves.zip"
    archive.write_bytes(class_zip(labels=("healthy", "rust", "blight"), per_label=12))
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: r.url.startswith(url) or problems.append(r.url))

            page.goto(f"{url}/datasets")
            expect(page).to_have_url(f"{url}/login?next=%2Fdatasets")
            page.screenshot(path=str(shots / "01-login.png"), full_page=True)
            page.fill("input[name=name]", "maria")
            page.fill("input[name=password]", "wrong password")
            page.click("button[type=submit]")
            expect(page.locator(".alert-error")).to_contain_text("Wrong user name or password")
            problems[:] = [p for p in problems if "401" not in p]  # the refused login's status
            page.fill("input[name=name]", "maria")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{url}/datasets")
            expect(page.locator(".who")).to_contain_text("maria")
            expect(page.locator("#datasets-table")).to_contain_text("No datasets yet")
            page.screenshot(path=str(shots / "02-datasets-empty.png"), full_page=True)

            form = page.locator("form.import-form")
            form.locator("input[name=name]").fill("leaves")
            form.locator("input[name=file]").set_input_files(str(archive))
            form.locator("button[type=submit]").click()
            job = page.locator(".import-job")
            expect(job).to_have_attribute("data-status", "done", timeout=60_000)
            expect(job).to_contain_text("36 images with 3 labels")
            row = page.locator("#datasets-table tbody tr", has_text="leaves")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("36")
            expect(row.locator("td").nth(4)).to_have_text("3")
            page.screenshot(path=str(shots / "03-datasets-imported.png"), full_page=True)

            token = app.state.console.login_tokens.issue()
            admin = browser.new_page(viewport={"width": 390, "height": 844})
            admin.on("pageerror", lambda e: problems.append(str(e)))
            admin.goto(f"{url}/?token={token}")
            expect(admin).to_have_url(f"{url}/datasets")
            expect(admin.locator(".role")).to_have_text("admin")
            expect(admin.get_by_text("Import from the server")).to_be_visible()
            admin.screenshot(path=str(shots / "04-datasets-admin-phone.png"), full_page=True)

            page.click("text=Log out")
            expect(page).to_have_url(f"{url}/login")
        finally:
            browser.close()
    assert problems == []
    assert workspace.dataset("leaves").label_counts() == {"blight": 12, "healthy": 12, "rust": 12}
