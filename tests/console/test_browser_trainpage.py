"""The Train page in a real headless Chromium: start a short training from the form, watch
its trials appear live (Server-Sent Events), then its done state with the model's link.
Screenshots go to $AUTOVISION_SCREENSHOTS (or the test's tmp folder)."""

from __future__ import annotations

import json
import re

import pytest

from autovision.data.dataset import Item

from ._browser import CHROMIUM, CHROMIUM_ARGS, need_chromium, screenshots_dir, serve
from ._helpers import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 3],
    "batch_size": 16,
}


@pytest.fixture
def leaves(workspace, image_bytes, monkeypatch):
    """Dataset ``leaves`` (healthy, rust, blight), and workers that search the fast space."""
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    monkeypatch.setenv("AUTOVISION_JOB_HEARTBEAT_S", "0.5")
    items, k = [], 1
    for li, label in enumerate(("healthy", "rust", "blight")):
        for split, n in (("train", 10), ("validation", 4), ("test", 3)):
            for _ in range(n):
                sha = workspace.blobs.put(image_bytes(li, 16, k))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    workspace.create_version("leaves", items, multi_label=False)
    return workspace


def test_start_a_training_and_watch_its_trials_to_done(leaves, tmp_path) -> None:
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from autovision.console.auth import create_user
    from autovision.console.recovery import recover_at_start

    shots = screenshots_dir(tmp_path)
    create_user(leaves, "maria", "trainer", PASSWORD)
    problems: list[str] = []
    streams: list[str] = []
    with serve(leaves) as (url, _app), sync_playwright() as pw:
        assert recover_at_start(leaves) == []  # what the lifespan does: nothing to resume
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: r.url.startswith(url) or problems.append(r.url))
            page.on("request", lambda r: "/events" in r.url and streams.append(r.url))

            page.goto(f"{url}/login?next=%2Ftrain")
            page.fill("input[name=name]", "maria")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{url}/train")
            expect(page.locator("#task-detected")).to_have_text("detected: single-label")
            expect(page.locator("#train-jobs")).to_contain_text("No training yet")
            page.click("text=Advanced options")
            page.screenshot(path=str(shots / "train-01-form.png"), full_page=True)

            page.select_option("#train-dataset", "leaves@1")
            page.check("input[name=budget_kind][value=trials]")
            page.fill("input[name=trials]", "3")
            page.fill("input[name=seed]", "1")
            page.check("input[name=exclude_issues][value=exact_duplicates]")
            page.click("button:has-text('Start training')")

            expect(page).to_have_url(re.compile(rf"{re.escape(url)}/train/jobs/job-[0-9a-f-]+$"))
            progress = page.locator("#train-progress")
            expect(progress).to_contain_text("exact_duplicates")
            rows = page.locator("table.trials tbody tr")
            expect(rows.first).to_be_visible(timeout=180_000)  # a trial as it finishes
            first_seen = rows.count()
            page.screenshot(path=str(shots / "train-02-job-running.png"), full_page=True)

            expect(progress).to_have_attribute("data-status", "done", timeout=240_000)
            expect(page.locator("tr[data-phase=explore]")).to_have_count(3)
            assert first_seen >= 1
            expect(page.locator(".trials tr.best")).to_have_count(1)
            expect(progress.locator(".outcome")).to_contain_text("every trial of the budget ran")
            expect(progress.locator(".stop-reason")).to_have_text("TRIALS_DONE")
            expect(progress.locator("a.model-link")).to_have_attribute("href", "/models/leaves/1")
            expect(progress.locator(".budget-text")).to_have_text("3 of 3 trials")
            expect(progress.locator("button:has-text('Cancel')")).to_have_count(0)
            page.screenshot(path=str(shots / "train-03-job-done.png"), full_page=True)
            assert streams, "the page never opened its event stream"

            page.click("text=Train")
            row = page.locator("#train-jobs tbody tr").first
            expect(row).to_contain_text("done")
            expect(row).to_contain_text("leaves@1")
            page.screenshot(path=str(shots / "train-04-jobs-list.png"), full_page=True)

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.on("pageerror", lambda e: problems.append(str(e)))
            phone.context.add_cookies(page.context.cookies())
            phone.goto(row.locator("a").first.get_attribute("href").join([url, ""]))
            expect(phone.locator("#train-progress")).to_have_attribute("data-status", "done")
            phone.screenshot(path=str(shots / "train-05-job-phone.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert leaves.model("leaves@1")["dataset"] == "leaves"
