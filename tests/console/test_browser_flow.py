"""The whole console flow in one real headless Chromium (Playwright, Debian's chromium), on
a generated dataset, as issue 15 lists it: log in, import a zip of class folders through the
upload form, see the distribution chart and the gallery, filter by label, exclude two images
(new version, diff shown), train two trials and watch them appear live, open the evaluation,
move the threshold slider, click a confusion-matrix cell, promote the version, try it with an
uploaded image, label an item of the review queue and an unlabeled image (new version).
A screenshot of every page goes to $AUTOVISION_SCREENSHOTS (or the test's tmp folder)."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import _pattern

from ._browser import CHROMIUM, CHROMIUM_ARGS, need_chromium, screenshots_dir, serve
from ._helpers import PASSWORD
from ._monitor import log_predictions

pytestmark = [pytest.mark.slow, pytest.mark.browser]
LABELS = ("healthy", "rust", "blight")
SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 3],
    "batch_size": 16,
}


def leaf(label_index: int, seed: int, size: int = 32) -> bytes:
    """A class pattern with three random grey blobs: the plain patterns of one class are
    near-duplicates of each other (one group, so one split), these are not."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(_pattern(label_index, size, seed))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = (int(v) for v in rng.integers(0, size - 8, 2))
        w, h = (int(v) for v in rng.integers(5, 14, 2))
        grey = int(rng.integers(0, 256))
        draw.ellipse([x, y, x + w, y + h], fill=(grey, grey, grey))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def leaves_zip(per_label: int, unlabeled: int) -> bytes:
    """LABEL/NNN.png for each of LABELS, and unlabeled images at the archive's root."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for li, label in enumerate(LABELS):
            for k in range(per_label):
                zf.writestr(f"{label}/{k:03d}.png", leaf(li, 1000 * li + k))
        for k in range(unlabeled):
            zf.writestr(f"unsorted-{k}.png", leaf(k % len(LABELS), 900 + k))
    return buf.getvalue()


def poll(page, script: str, ok, what: str, timeout: float = 20) -> object:
    """Evaluate ``script`` until ``ok(value)`` (the pages' CSP forbids the eval that
    ``page.wait_for_function`` needs)."""
    end = time.monotonic() + timeout
    while not ok(value := page.evaluate(script)):
        assert time.monotonic() < end, f"{what}: still {value!r} after {timeout} s"
        time.sleep(0.05)
    return value


def images_loaded(page, selector: str, n: int | None = None) -> None:
    script = (
        f"(() => {{ const all = [...document.querySelectorAll({selector!r})]"
        f".slice(0, {n if n is not None else 'undefined'});"
        " all.forEach(i => { i.loading = 'eager'; });"
        " return [all.length, all.filter(i => i.complete && i.naturalWidth > 0).length]; })()"
    )
    poll(page, script, lambda v: v[0] > 0 and v[0] == v[1], f"{selector} images loaded")


@pytest.fixture
def fast_training(monkeypatch):
    """Workers that search a tiny space quickly (the worker process inherits the env)."""
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    monkeypatch.setenv("AUTOVISION_JOB_HEARTBEAT_S", "0.5")


def test_the_whole_flow_in_a_browser(workspace, image_bytes, tmp_path, fast_training) -> None:
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from autovision.console.auth import create_user
    from autovision.monitoring import review
    from autovision.versions import store

    shots = screenshots_dir(tmp_path)
    ws = workspace
    create_user(ws, "maria", "admin", PASSWORD)
    archive = tmp_path / "leaves.zip"
    archive.write_bytes(leaves_zip(per_label=14, unlabeled=3))
    photo = tmp_path / "field-photo.png"
    photo.write_bytes(image_bytes(1, 48, 77))
    shot_no = iter(range(1, 100))
    problems: list[str] = []

    def shot(page, name: str, **kwargs) -> None:
        page.screenshot(path=str(shots / f"flow-{next(shot_no):02d}-{name}.png"), **kwargs)

    with serve(ws) as (url, _app), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
            page.on("request", lambda r: r.url.startswith(url) or problems.append(r.url))

            # ---- log in -------------------------------------------------------------------
            page.goto(f"{url}/datasets")
            expect(page).to_have_url(f"{url}/login?next=%2Fdatasets")
            shot(page, "login", full_page=True)
            page.fill("input[name=name]", "maria")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{url}/datasets")
            expect(page.locator(".who")).to_contain_text("maria")

            # ---- import a zip of class folders (and three unlabeled images) ---------------
            form = page.locator("form.import-form")
            form.locator("input[name=name]").fill("leaves")
            form.locator("input[name=file]").set_input_files(str(archive))
            form.locator("input[name=split]").fill("60/20/20")
            form.locator("button[type=submit]").click()
            job = page.locator(".import-job")
            expect(job).to_have_attribute("data-status", "done", timeout=60_000)
            expect(job).to_contain_text("45 images")
            row = page.locator("#datasets-table tbody tr", has_text="leaves")
            expect(row).to_contain_text("45")
            shot(page, "datasets-imported", full_page=True)

            # ---- distribution, gallery, filter by label, exclude two ----------------------
            page.click("#datasets-table a:text-is('leaves')")
            expect(page).to_have_url(f"{url}/datasets/leaves/1")
            chart = page.locator("svg.bar-chart").first
            expect(chart).to_be_visible()
            for label in LABELS:
                expect(chart).to_contain_text(label)
            expect(page.locator(".gallery-total")).to_contain_text("45 images")
            # named after the uploaded zip, not the server's removed temp folder
            expect(page.locator("main")).to_contain_text("from leaves.zip")
            expect(page.locator("main")).not_to_contain_text("console-upload-")
            expect(page.locator(".tile")).to_have_count(45)
            images_loaded(page, ".tile img")
            shot(page, "dataset-version", full_page=True)

            page.select_option("select[name=label]", "rust")
            expect(page).to_have_url(f"{url}/datasets/leaves/1?label=rust")
            expect(page.locator(".tile")).to_have_count(14)
            assert set(page.locator(".tile .tile-label").all_inner_texts()) == {"rust"}
            tiles = page.locator(".tile")
            excluded = {int(tiles.nth(i).get_attribute("data-id")) for i in (0, 1)}
            tiles.nth(0).locator("input[type=checkbox]").click()
            tiles.nth(1).locator("input[type=checkbox]").click()
            expect(page.locator("#sel-n")).to_have_text("2")
            images_loaded(page, ".tile img", 14)
            shot(page, "gallery-rust-selected", full_page=True)
            page.click("#btn-exclude")
            expect(page).to_have_url(f"{url}/datasets/leaves/2")
            diff = page.locator("#diff")
            expect(diff).to_contain_text("Changes from @1")
            expect(diff).to_contain_text("2 removed")
            expect(diff.locator(".diff-tile")).to_have_count(2)
            expect(page.locator(".gallery-total")).to_contain_text("43 images")
            images_loaded(page, ".diff-tile img")
            images_loaded(page, ".tile img")
            shot(page, "dataset-v2-diff", full_page=True)
            assert excluded.isdisjoint(ws.dataset("leaves@2").by_id())

            # ---- train two trials, watch them arrive ---------------------------------------
            page.click("nav >> text=Train")
            expect(page).to_have_url(f"{url}/train")
            page.select_option("#train-dataset", "leaves@2")
            expect(page.locator("#task-detected")).to_have_text("detected: single-label")
            page.check("input[name=budget_kind][value=trials]")
            page.fill("input[name=trials]", "2")
            shot(page, "train-form", full_page=True)
            page.click("button:has-text('Start training')")
            expect(page).to_have_url(re.compile(rf"{re.escape(url)}/train/jobs/job-[0-9a-f-]+$"))
            progress = page.locator("#train-progress")
            seen_live, status = poll(  # a trial as it finishes, before the job is done
                page,
                "[document.querySelectorAll('tr[data-phase=explore]').length,"
                " document.getElementById('train-progress').dataset.status]",
                lambda v: v[0] > 0 or v[1] in ("done", "failed"),
                "the first trial",
                timeout=150,
            )
            assert status != "failed", progress.inner_text()
            shot(page, "train-running", full_page=True)
            expect(progress).to_have_attribute("data-status", "done", timeout=150_000)
            expect(page.locator("tr[data-phase=explore]")).to_have_count(2)
            assert seen_live >= 1
            expect(progress.locator(".stop-reason")).to_have_text("TRIALS_DONE")
            expect(progress.locator(".budget-text")).to_have_text("2 of 2 trials")
            shot(page, "train-done", full_page=True)

            # ---- the evaluation: slider, confusion-matrix cell -----------------------------
            progress.locator("a.model-link").click()
            expect(page).to_have_url(f"{url}/models/leaves/1")
            expect(page.locator("h1")).to_contain_text("leaves")
            images_loaded(page, "main img")
            expect(page.locator("main")).not_to_contain_text("console-upload-")
            shot(page, "model-version", full_page=True)
            overall = page.locator("#threshold-overall")
            shown = {}
            for t in ("0", "0.6"):
                page.locator("#threshold-slider").fill(t)
                expect(page.locator("#threshold-value")).to_have_text(f"{float(t):.2f}")
                shown[t] = [
                    overall.locator(f'[data-metric="{k}"]').inner_text()
                    for k in ("precision", "recall", "f1", "coverage")
                ]
            assert shown["0"] != shown["0.6"], shown
            page.locator("#threshold").screenshot(path=str(shots / "flow-threshold-0.6.png"))
            page.locator("#threshold-slider").fill("0")
            cell = page.locator("#confusion-matrix a[data-true][data-pred]").first
            true, pred = cell.get_attribute("data-true"), cell.get_attribute("data-pred")
            cell.click()
            result = page.locator("#cell-gallery #cell-result")
            expect(result).to_have_attribute("data-pred", pred)
            expect(result).to_have_attribute("data-true", true)
            images_loaded(page, "#cell-gallery img")
            page.locator("#confusion").screenshot(path=str(shots / "flow-confusion-cell.png"))

            # ---- promote, then try it ------------------------------------------------------
            page.click("nav >> text=Deploy")
            expect(page).to_have_url(f"{url}/deploy")
            card = page.locator("#model-leaves")
            shot(page, "deploy", full_page=True)
            promote = card.locator("form.promote-form")
            promote.locator("select[name=version]").select_option("1")
            promote.locator("input[name=alias]").fill("production")
            promote.locator("input[name=reason]").fill("first release")
            promote.locator("button[type=submit]").click()
            card = page.locator("#model-leaves")
            expect(card.locator("tr[data-alias=production]")).to_have_attribute("data-version", "1")
            try_form = page.locator("form.tryit-form")
            expect(try_form.locator("option", has_text="leaves@production")).to_have_count(1)
            try_form.locator("select[name=model]").select_option("leaves@production")
            try_form.locator("input[name=files]").set_input_files(str(photo))
            try_form.locator("button[type=submit]").click()
            answer = page.locator(".tryit-answer")
            expect(answer).to_have_attribute("data-version", "1", timeout=30_000)
            first = answer.locator('article[data-name="field-photo.png"]')
            expect(first.locator(".bar-row")).to_have_count(3)
            assert first.locator(".verdict-label").inner_text() in LABELS
            confidences = [
                float(first.locator(".bar-row").nth(i).get_attribute("data-confidence"))
                for i in range(3)
            ]
            assert abs(sum(confidences) - 1) < 1e-3
            images_loaded(page, ".tryit-answer img")
            shot(page, "deploy-promoted-try-it", full_page=True)
            assert store.aliases(ws, "leaves")["production"] == 1

            # ---- the review queue: "try it" logs nothing, so seed the prediction log -------
            assert review.queue(ws, "leaves")["total"] == 0
            mv = store.resolve(ws, "leaves@production")
            model_labels = tuple(review._Models(ws).labels(mv.id))
            assert sorted(model_labels) == sorted(LABELS)
            log_predictions(ws, image_bytes, [(0.9, 0.06, 0.04)] * 4, name="leaves",
                            model_id=mv.id, labels=model_labels, hours_ago=3)  # fmt: skip
            pids = log_predictions(ws, image_bytes, [(0.42, 0.38, 0.2), (0.2, 0.45, 0.35)],
                                   name="leaves", model_id=mv.id, labels=model_labels)  # fmt: skip
            queued = review.queue(ws, "leaves")
            assert {i["id"] for i in queued["items"]} == set(pids), queued
            page.click("nav >> text=Monitor")
            expect(page).to_have_url(f"{url}/monitor")
            expect(page.locator("tbody tr", has_text="leaves")).to_be_visible()
            shot(page, "monitor-index", full_page=True)
            page.click("tbody tr a:text-is('leaves')")
            expect(page).to_have_url(f"{url}/monitor/leaves")
            item = page.locator("#review .review-item")
            expect(item).to_have_count(1)
            first_id = item.get_attribute("data-item")
            assert first_id in pids
            images_loaded(page, "#review img")
            shot(page, "monitor-review", full_page=True)
            wanted = model_labels.index("blight") + 1
            page.keyboard.press(str(wanted))
            expect(page.locator("#review .review-item")).not_to_have_attribute(
                "data-item", first_id
            )
            assert review.get(ws, first_id).review_labels == ["blight"]
            expect(page.locator("#queued-stat")).to_have_text("1")

            # ---- label an unlabeled image, save a new version ------------------------------
            page.click("nav >> text=Label")
            expect(page).to_have_url(f"{url}/label")
            row = page.locator("tbody tr", has_text="leaves")
            expect(row).to_contain_text("v2")
            expect(row).to_contain_text("leaves@1")  # the model that pre-labels
            shot(page, "label-index", full_page=True)
            page.click("tbody tr a:text-is('leaves')")
            card = page.locator("#labeling .review-item")
            expect(card).to_have_count(1)
            expect(page.locator("#labeling")).to_contain_text("pre-labelled by leaves@1")
            item_id = int(card.get_attribute("data-item"))
            expect(card).to_contain_text("leaves.zip:unsorted-")
            images_loaded(page, "#labeling img")
            shot(page, "label-queue", full_page=True)
            page.locator("#labeling button.choice", has_text="rust").click()
            expect(page.locator("#labeling .draft-bar")).to_contain_text("1 labeled")
            page.click("text=Save as new version")
            expect(page.locator("#labeling .alert-ok")).to_contain_text("leaves@3")
            shot(page, "label-saved", full_page=True)
        finally:
            browser.close()
    assert problems == []
    v3 = ws.dataset("leaves")
    assert v3.version == 3
    assert v3.by_id()[item_id].labels == ("rust",)
