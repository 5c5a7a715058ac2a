"""The deploy and usage pages in a real headless Chromium: an admin promotes a version,
tries it with uploaded images (one of them broken) and sees labels and confidences from the
version the alias names; then the usage page. Screenshots go to $AUTOVISION_SCREENSHOTS (or
the test's tmp folder): look at them when the pages change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autovision.versions import store

from ._deploy_models import build_package, register
from .test_browser import CHROMIUM, CHROMIUM_ARGS, console_url, shots  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.browser]
LABELS = ("healthy", "rust", "blight")


def test_promote_then_try_it_then_usage(console_url, workspace, image_bytes, shots, tmp_path):  # noqa: F811
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (make system-deps)")
    from playwright.sync_api import expect, sync_playwright

    from autovision.usage.records import ServeRecorder, TrainRecorder

    url, app = console_url
    packages = [build_package(tmp_path / f"p{s}", s, labels=LABELS) for s in (31, 32)]
    ids = register(workspace, packages, accuracies=(0.842, 0.913))
    store.set_alias(workspace, "leaves", 1, "production", reason="first release")
    with TrainRecorder(workspace, "leaves@2") as rec:
        rec.note(model=ids[1], trials=4, stop_reason="BUDGET_EXHAUSTED", run_id="r-2")
    serve = ServeRecorder(workspace)
    for ms in (4, 6, 9, 15):
        serve.observe(ids[0], 3, ms / 1000)
    serve.close()
    uploads = []
    for i, label in enumerate((0, 2)):
        path = tmp_path / f"field-photo-{i + 1}.png"
        path.write_bytes(image_bytes(label, 96, seed=7 + i))
        uploads.append(str(path))
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(image_bytes(1, 96, fmt="JPEG")[:300])
    uploads.append(str(broken))

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
            page.on("request", lambda r: r.url.startswith(url) or problems.append(r.url))
            page.goto(f"{url}/?token={app.state.console.login_tokens.issue()}")
            page.click("nav >> text=Deploy")
            expect(page).to_have_url(f"{url}/deploy")
            card = page.locator("#model-leaves")
            expect(card.locator("tr[data-alias=production]")).to_have_attribute("data-version", "1")
            page.screenshot(path=str(shots / "deploy-01-models.png"), full_page=True)

            form = card.locator("form.promote-form")
            form.locator("select[name=version]").select_option("2")
            form.locator("input[name=alias]").fill("production")
            form.locator("input[name=reason]").fill("better test accuracy")
            form.locator("button[type=submit]").click()
            card = page.locator("#model-leaves")
            expect(card.locator(".alert-ok")).to_contain_text("version 1 → version 2")
            expect(card.locator("tr[data-alias=production]")).to_have_attribute("data-version", "2")
            expect(card.locator("tr[data-alias=production] button")).to_have_text("Roll back to v1")
            card.locator("details.history summary").click()
            expect(card.locator("details.history")).to_contain_text("better test accuracy")
            page.screenshot(path=str(shots / "deploy-02-promoted.png"), full_page=True)

            try_form = page.locator("form.tryit-form")
            # the choices followed the move (refreshed after it)
            expect(try_form.locator("option").first).to_have_text("leaves@production (version 2)")
            try_form.locator("select[name=model]").select_option("leaves@production")
            try_form.locator("input[name=files]").set_input_files(uploads)
            try_form.locator("button[type=submit]").click()
            answer = page.locator(".tryit-answer")
            expect(answer).to_have_attribute("data-version", "2", timeout=30_000)
            expect(answer.locator(".answered-by")).to_have_text("leaves@2")
            expect(answer.locator("article.result:not(.result-failed)")).to_have_count(2)
            first = answer.locator('article[data-name="field-photo-1.png"]')
            expect(first.locator(".bar-row")).to_have_count(3)
            expect(first.locator(".verdict-label")).to_have_count(1)
            verdict = first.locator(".verdict-label").inner_text()
            assert verdict in LABELS
            bars = first.locator(".bar-row")
            assert bars.first.get_attribute("data-label") == verdict
            confidences = [float(bars.nth(i).get_attribute("data-confidence")) for i in range(3)]
            assert confidences == sorted(confidences, reverse=True)
            assert abs(sum(confidences) - 1) < 1e-3
            expect(first.locator("img.preview")).to_be_visible()
            expect(answer.locator('article[data-name="truncated.jpg"]')).to_contain_text(
                "truncated.jpg:"
            )
            answer.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "deploy-03-try-it.png"), full_page=True)

            page.click("nav >> text=Usage")
            expect(page).to_have_url(f"{url}/usage")
            expect(page.locator("#stat-predictions")).to_have_text("12")
            expect(page.locator("#usage-train")).to_contain_text("BUDGET_EXHAUSTED")
            expect(page.locator("#usage-serve")).to_contain_text("leaves@1")
            expect(page.locator("#usage-storage svg.chart rect")).to_have_count(2)
            page.screenshot(path=str(shots / "usage-01.png"), full_page=True)

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.on("pageerror", lambda e: problems.append(str(e)))
            phone.context.add_cookies(page.context.cookies())
            phone.goto(f"{url}/deploy")
            expect(phone.locator("#model-leaves")).to_be_visible()
            phone.screenshot(path=str(shots / "deploy-04-phone.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert store.aliases(workspace, "leaves")["production"] == 2
