"""The model page in headless Chromium: open a version's evaluation, move the threshold
slider and see precision, recall and F1 become the Python reference's values (computed in
the browser, no request), check the page's JavaScript against the reference on single- and
multi-label data, and click a confusion-matrix cell to see its test images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from . import test_browser as _browser
from ._helpers import PASSWORD
from ._models import trained_workspace
from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.browser]
console_url, shots = _browser.console_url, _browser.shots  # the shared fixtures
EAGER = "document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })"
ALL_IMAGES_LOADED = (
    "() => [...document.querySelectorAll('SCOPE img')].every(i => i.complete && i.naturalWidth)"
)


@pytest.fixture
def workspace(tmp_path_factory, tmp_path):  # the console_url fixture serves this one
    return trained_workspace(tmp_path_factory, tmp_path / "ws")


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a == b)


def _value(text: str):
    return None if text == "" else float(text)


def test_slider_and_confusion_cells_in_the_browser(console_url, workspace, shots):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (make system-deps)")
    from playwright.sync_api import expect, sync_playwright

    from autovision.console.auth import create_user
    from autovision.evaluation.confidence import metrics_at
    from autovision.evaluation.stored import cell_ids, matrices, stored_evaluation

    url, _ = console_url
    create_user(workspace, "ana", "viewer", PASSWORD)
    ev = stored_evaluation(workspace, "shapes@2")
    Y, P = matrices(ev)
    labels = ev["metrics"]["labels"]
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "ana")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{url}/models")
            page.screenshot(path=str(shots / "10-models.png"), full_page=True)
            page.click('a[href="/models/shapes/2"]')
            expect(page.locator("h1")).to_contain_text("shapes")
            page.evaluate(EAGER)
            page.wait_for_function(ALL_IMAGES_LOADED.replace("SCOPE ", ""))
            page.screenshot(path=str(shots / "11-model-version.png"), full_page=True)

            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            overall = page.locator("#threshold-overall")
            before = overall.locator('[data-metric="recall"]').inner_text()
            for t in (0.0, 0.4, 0.45, 0.5, 0.55):
                page.locator("#threshold-slider").fill(f"{t}")
                expect(page.locator("#threshold-value")).to_have_text(f"{t:.2f}")
                ref = metrics_at(Y, P, "single-label", t)
                for key in ("precision", "recall", "f1", "coverage"):
                    shown = overall.locator(f'[data-metric="{key}"]').get_attribute("data-value")
                    assert _same(_value(shown), ref["micro"][key]), (t, key, shown)
                rows = page.locator("#threshold-table tr[data-label-index]")
                for j in range(len(labels)):
                    row = rows.nth(j)
                    for key in ("precision", "recall", "f1"):
                        shown = row.locator(f'[data-metric="{key}"]').get_attribute("data-value")
                        assert _same(_value(shown), ref["per_label"][j][key]), (t, j, key)
            assert requests == []  # the slider computes in the page: no round trip
            after = overall.locator('[data-metric="recall"]').inner_text()
            assert after != before
            page.locator("#threshold").screenshot(path=str(shots / "12-threshold-0.55.png"))

            # the page's JavaScript against the Python reference, multi-label data as well
            rng = np.random.default_rng(7)
            Pm = rng.random((40, 4)).round(3)
            Ym = (rng.random((40, 4)) < 0.4).astype(np.int64)
            multi = {
                "task": "multi-label",
                "labels": list("abcd"),
                "true": [[int(j) for j in np.flatnonzero(r)] for r in Ym],
                "probs": Pm.tolist(),
            }
            for data, Yr, Pr, task in (
                (page.evaluate("JSON.parse(document.getElementById('eval-data').textContent)"),
                 Y, P, "single-label"),
                (multi, Ym, Pm, "multi-label"),
            ):  # fmt: skip
                for t in (0.0, 0.25, 0.37, 0.5, 0.8, 1.0):
                    got = page.evaluate("([d, t]) => window.avEvalpage.compute(d, t)", [data, t])
                    ref = metrics_at(Yr, Pr, task, t)
                    assert got["micro"] == ref["micro"], (task, t)
                    assert got["per_label"] == ref["per_label"], (task, t)

            page.locator("#threshold-slider").fill("0")
            true, pred = next(
                (labels[i], labels[j])
                for i, row in enumerate(ev["metrics"]["confusion_matrix"]["matrix"])
                for j, n in enumerate(row)
                if n and i != j
            )
            cell = page.locator(f'#confusion-matrix a[data-true="{true}"][data-pred="{pred}"]')
            cell.click()
            result = page.locator("#cell-gallery #cell-result")
            expect(result).to_have_attribute("data-pred", pred)
            images = page.locator("#cell-gallery img")
            expect(images).to_have_count(len(cell_ids(ev, true, pred)))
            page.wait_for_function(ALL_IMAGES_LOADED.replace("SCOPE", "#cell-gallery"))
            page.locator("#confusion").screenshot(path=str(shots / "13-confusion-cell.png"))

            page.goto(f"{url}/models/shapes/compare?a=1&b=2")
            expect(page.locator("#compare-labels")).to_contain_text("cat")
            page.screenshot(path=str(shots / "14-model-compare.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
