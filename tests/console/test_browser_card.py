"""The model card in headless Chromium: from a version's page, the "Model card" link opens
the card generated from the records, styled by its own stylesheet (the console's CSP has no
inline styles), with the HTML label and the user's card text shown as text, never run."""

from __future__ import annotations

import pytest

from ._browser import CHROMIUM, CHROMIUM_ARGS, need_chromium, screenshots_dir, serve
from ._helpers import PASSWORD
from ._models import XSS, trained_workspace

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SCRIPT = "<script>document.title='pwned'</script>"


@pytest.fixture
def workspace(tmp_path_factory, tmp_path):
    return trained_workspace(tmp_path_factory, tmp_path / "ws")


def test_model_card_from_the_version_page(workspace, tmp_path):
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from autovision.cards import set_card_info
    from autovision.console.auth import create_user
    from autovision.evaluation import evaluate

    metrics = evaluate(workspace, "shapes@2")
    set_card_info(workspace, "shapes@2", {"intended_use": f"Sorting shapes {SCRIPT}",
                                          "limitations": ["Only 24 test images"]})  # fmt: skip
    create_user(workspace, "ana", "viewer", PASSWORD)
    shots = screenshots_dir(tmp_path)
    problems: list[str] = []
    with serve(workspace) as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: (problems.append(f"dialog {d.message}"), d.dismiss()))
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "ana")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{url}/models/shapes/2")
            page.click("#model-card-link")
            expect(page.locator("h1")).to_have_text("Model card: shapes@2")
            for sid in ("model-details", "intended-use", "factors", "metrics", "evaluation-data",
                        "training-data", "training", "fairness", "ethical-considerations",
                        "caveats", "monitoring", "lineage"):  # fmt: skip
                expect(page.locator(f"section#{sid}")).to_be_visible()
            expect(page.locator("#intended-use")).to_contain_text(f"Sorting shapes {SCRIPT}")
            expect(page.locator("#per-label")).to_contain_text(XSS)  # the label, as text
            acc = page.locator('#overall [data-metric="accuracy"]').inner_text()
            assert acc == f"{metrics['accuracy']:.4f}"
            radius = page.evaluate(
                "getComputedStyle(document.querySelector('section')).borderTopLeftRadius"
            )
            assert radius == "10px"  # card.css was applied
            assert page.title() == "Model card: shapes@2"  # no script ran
            assert page.locator("#per-label img").count() == 0
            page.screenshot(path=str(shots / "20-model-card.png"), full_page=True)
            page.click("#back")
            expect(page).to_have_url(f"{url}/models/shapes/2")
            md = page.request.get(f"{url}/models/shapes/2/card?format=md")  # no favicon fetch
            assert md.ok and md.headers["content-type"].startswith("text/markdown")
            assert md.text().startswith("# Model card: shapes@2")
        finally:
            browser.close()
    assert problems == []
