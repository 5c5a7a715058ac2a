"""The HTML report: self-contained, and it renders in headless Chromium without errors."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autovision.evaluation import evaluate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for key, value in attrs:
            if key in ("src", "href"):
                self.refs.append(value or "")
            if key == "id":
                self.ids.add(value or "")


def test_report_is_self_contained(known, tmp_path):
    path = tmp_path / "out" / "report.html"
    result = evaluate(known, "m-known", report=path, slice_by="site")
    assert result["report"] == str(path.resolve())
    html = path.read_text()
    parser = _Refs()
    parser.feed(html)
    assert parser.refs and all(ref.startswith("data:") for ref in parser.refs)
    assert "script" not in parser.tags and "link" in parser.tags  # only the inline favicon
    for section in ("summary", "per-label", "confusion-matrix", "most-confused", "worst-errors",
                    "thresholds", "calibration", "distribution", "slices"):  # fmt: skip
        assert section in parser.ids
    assert html.count("data:image/png;base64,") == 4  # ROC, PR, thresholds, calibration
    assert "data:image/jpeg;base64," in html  # thumbnails of the mistake
    assert "id 104" in html and "m-known" in html


@pytest.mark.slow
def test_report_opens_in_headless_chromium(real_model, tmp_path):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (make system-deps)")
    from playwright.sync_api import sync_playwright

    report = tmp_path / "report.html"
    evaluate(real_model, "m-real", report=report, slice_by="camera")
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
            page.on(
                "request",
                lambda r: r.url.startswith(("file:", "data:")) or problems.append(r.url),
            )
            page.goto(report.as_uri(), wait_until="load")
            matrix = page.locator("#confusion-matrix")
            assert matrix.count() == 1 and matrix.is_visible()
            assert matrix.locator("tbody tr").count() == 3
            assert page.evaluate(
                "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            matrix_shot = tmp_path / "confusion.png"
            matrix.screenshot(path=str(matrix_shot))
        finally:
            browser.close()
    assert problems == []
    assert shot.stat().st_size > 50_000
    assert matrix_shot.stat().st_size > 1_000
