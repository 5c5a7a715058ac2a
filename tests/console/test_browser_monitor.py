"""The Monitor and Label pages in a real headless Chromium: label review-queue items with
key presses (a number, Enter, S), then label unlabeled images and save a new version.
Screenshots go to $AUTOVISION_SCREENSHOTS (or the test's tmp folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from autovision.data import labeling
from tests.data._labeling import make_dataset, register_stub

from . import test_browser as _browser
from ._helpers import PASSWORD
from ._monitor import log_predictions, pets_model, stored_check
from .test_browser import CHROMIUM, CHROMIUM_ARGS

console_url = _browser.console_url  # the fixtures of the first browser test
shots = _browser.shots

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _log_in(page, url, name):
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_review_with_keys_then_label_unlabeled_images(
    console_url,
    workspace,
    tmp_path,
    image_bytes,
    shots,
    monkeypatch,
):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (make system-deps)")
    from playwright.sync_api import expect, sync_playwright

    from autovision.console.auth import create_user
    from autovision.monitoring import review

    url, _app = console_url
    create_user(workspace, "rita", "reviewer", PASSWORD)
    pets_model(workspace, tmp_path)
    log_predictions(workspace, image_bytes, [(0.95, 0.03, 0.02)] * 6, hours_ago=5)
    ids = log_predictions(
        workspace, image_bytes, [(0.45, 0.35, 0.2), (0.40, 0.35, 0.25), (0.48, 0.12, 0.40)]
    )
    stored_check(workspace)
    leaves = make_dataset(workspace, image_bytes, labeled=4, unlabeled=4)
    register_stub(workspace, tmp_path, "leaves", ["healthy", "rust"])
    sha = {it.id: it.sha256 for it in leaves.items}
    guesses = {5: [0.3, 0.7], 6: [0.9, 0.1], 7: [0.52, 0.48], 8: [0.2, 0.8]}
    probs = {sha[i]: p for i, p in guesses.items()}
    monkeypatch.setattr(
        labeling, "_predict", lambda ws, mv, rows: {r["sha256"]: probs[r["sha256"]] for r in rows}
    )

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: r.url.startswith(url) or problems.append(r.url))
            _log_in(page, url, "rita")
            expect(page).to_have_url(f"{url}/datasets")

            page.click("nav >> text=Monitor")
            expect(page).to_have_url(f"{url}/monitor")
            expect(page.locator("tbody tr", has_text="pets")).to_contain_text("9")
            page.screenshot(path=str(shots / "monitor-01-index.png"), full_page=True)
            page.click("text=pets")
            item = page.locator("#review .review-item")
            expect(item).to_have_attribute("data-item", ids[1])  # smallest margin
            expect(page.locator("#review img")).to_have_js_property("complete", True)
            page.screenshot(path=str(shots / "monitor-02-page.png"), full_page=True)

            page.keyboard.press("2")  # dog
            expect(item.first).to_have_attribute("data-item", ids[2])
            page.keyboard.press("Enter")  # confirm the guess (cat)
            expect(page.locator("#review .review-item")).to_have_attribute("data-item", ids[0])
            page.screenshot(path=str(shots / "monitor-03-next-item.png"))
            expect(page.locator("#queued-stat")).to_have_text("1")
            page.keyboard.press("s")
            expect(page.locator("#review")).to_contain_text("Nothing to review")
            assert review.get(workspace, ids[1]).review_labels == ["dog"]
            assert review.get(workspace, ids[2]).review_labels == ["cat"]
            assert review.get(workspace, ids[0]).review_status == "skipped"

            page.click("nav >> text=Label")
            expect(page.locator("tbody tr", has_text="leaves")).to_contain_text("leaves@1")
            page.click("text=leaves")
            card = page.locator("#labeling .review-item")
            expect(card).to_have_attribute("data-item", "7")  # 0.52: least certain
            expect(page.locator("#labeling img")).to_have_js_property("complete", True)
            page.screenshot(path=str(shots / "label-01-queue.png"), full_page=True)
            page.keyboard.press("Enter")  # confirm "healthy"
            expect(page.locator("#labeling .review-item")).to_have_attribute("data-item", "5")
            page.keyboard.press("1")  # correct the guess (rust) to healthy
            expect(page.locator("#labeling .review-item")).to_have_attribute("data-item", "8")
            page.fill("input[name=new_label]", "blight")
            page.keyboard.press("Enter")  # in the text field: submits the typed label
            expect(page.locator("#labeling .review-item")).to_have_attribute("data-item", "6")
            expect(page.locator("#labeling .draft-bar")).to_contain_text("3 labeled")
            page.click("text=Save as new version")
            expect(page.locator("#labeling .alert-ok")).to_contain_text("leaves@2")
            page.screenshot(path=str(shots / "label-02-saved.png"), full_page=True)

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.on("pageerror", lambda e: problems.append(str(e)))
            _log_in(phone, url, "rita")
            phone.goto(f"{url}/monitor/pets?window=7d")
            phone.screenshot(path=str(shots / "monitor-04-phone.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    v2 = workspace.dataset("leaves")
    assert v2.params["labeled"] == [5, 7, 8]
    assert [v2.by_id()[i].labels for i in (5, 7, 8)] == [("healthy",), ("healthy",), ("blight",)]
