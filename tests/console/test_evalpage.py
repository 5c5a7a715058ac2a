"""The model pages through TestClient, over two versions of a tiny trained model: the list,
one version's evaluation, the cells of its confusion matrix, thumbnails by opaque id, the
comparison, escaping of a label that is HTML, and read-only access for every role."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from ._helpers import BASE, PASSWORD, login
from ._models import XSS, trained_workspace

pytestmark = pytest.mark.slow  # trains a small CNN once per session (seconds)
ROLES = ("viewer", "reviewer", "trainer", "admin")


@pytest.fixture(scope="module")
def models_ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, tmp_path_factory.mktemp("evalpage") / "ws")


@pytest.fixture(scope="module")
def clients(models_ws):
    from autovision.console.app import create_app
    from autovision.console.auth import create_user

    app = create_app(models_ws)
    out = {}
    for role in ROLES:
        create_user(models_ws, f"{role}-user", role, PASSWORD)
        client = TestClient(app, base_url=BASE)
        assert login(client, f"{role}-user").status_code == 303
        out[role] = client
    out["anonymous"] = TestClient(app, base_url=BASE)
    return out


@pytest.fixture
def viewer(clients):
    return clients["viewer"]


def _truth_and_top(ws, ref="shapes@2"):
    """Independently of the page: each test image's true label and the model's top label."""
    from autovision.evaluation.predictions import predict_split

    preds = predict_split(ws, ref)
    top = preds.probs.argmax(axis=1)
    return {it.id: (it.label, preds.labels[j]) for it, j in zip(preds.items, top, strict=True)}


def test_models_list_shows_each_version_with_aliases(viewer):
    page = viewer.get("/models")
    assert page.status_code == 200
    assert 'href="/models/shapes/1"' in page.text and 'href="/models/shapes/2"' in page.text
    assert "default" in page.text and "shapes@1" in page.text
    assert 'action="/models/shapes/compare"' in page.text
    nav = re.search(r'<a href="/models"[^>]*>', page.text).group(0)
    assert 'aria-current="page"' in nav


def test_version_page_has_the_reports_figures(viewer, models_ws):
    from autovision.evaluation.stored import stored_evaluation

    page = viewer.get("/models/shapes/2")
    assert page.status_code == 200, page.text
    m = stored_evaluation(models_ws, "shapes@2")["metrics"]
    for section in ("summary", "threshold", "per-label", "confusion", "curves", "calibration",
                    "most-confused", "worst-errors"):  # fmt: skip
        assert f'id="{section}"' in page.text, section
    assert f"{m['accuracy']:.3f}" in page.text and f"{m['macro']['f1']:.3f}" in page.text
    assert "<svg" in page.text and "Precision-recall curves" in page.text
    cells = re.findall(r'data-true="([^"]*)" data-pred="([^"]*)">(\d+)</a>', page.text)
    labels = m["labels"]
    shown = {(html.unescape(t), html.unescape(p)): int(n) for t, p, n in cells}
    expected = {
        (labels[i], labels[j]): n
        for i, row in enumerate(m["confusion_matrix"]["matrix"])
        for j, n in enumerate(row)
        if n
    }
    assert shown == expected and any(t != p for t, p in shown)
    for e in m["worst_errors"]:
        assert f'/models/shapes/2/image/{e["id"]}"' in page.text


def test_slider_data_is_embedded_as_json_and_the_first_numbers_are_pythons(viewer, models_ws):
    from autovision.evaluation.confidence import metrics_at
    from autovision.evaluation.stored import matrices, slider_data, stored_evaluation

    page = viewer.get("/models/shapes/2").text
    block = re.search(r'<script type="application/json" id="eval-data">(.*?)</script>', page, re.S)
    data = json.loads(block.group(1))
    ev = stored_evaluation(models_ws, "shapes@2")
    assert data == slider_data(ev)
    Y, P = matrices(ev)
    at0 = metrics_at(Y, P, "single-label", 0.0)["micro"]
    assert at0["precision"] == pytest.approx(ev["metrics"]["accuracy"])  # nothing abstains
    shown = re.search(r'data-metric="precision" data-value="([^"]*)"', page).group(1)
    assert float(shown) == at0["precision"]
    assert '<script src="/static/evalpage.js' in page


def test_a_label_that_is_html_is_shown_as_text(viewer):
    for url in ("/models/shapes/2", "/models/shapes/compare?a=1&b=2",
                f"/models/shapes/2/cell?true={quote(XSS)}&pred=dog"):  # fmt: skip
        page = viewer.get(url, headers={"HX-Request": "true"} if "cell" in url else {})
        assert page.status_code == 200, url
        assert XSS not in page.text, url
        assert html.escape(XSS, quote=False) in page.text, url
    data = viewer.get("/models/shapes/2").text
    block = re.search(r'id="eval-data">(.*?)</script>', data, re.S).group(1)
    assert "<img" not in block and "\\u003cimg" in block  # no way out of the JSON block


@pytest.mark.parametrize("htmx", [True, False])
def test_cell_gallery_is_exactly_the_test_images_of_that_pair(viewer, models_ws, htmx):
    pairs = _truth_and_top(models_ws)
    for true, pred in {(t, p) for t, p in pairs.values()}:
        url = f"/models/shapes/2/cell?true={quote(true)}&pred={quote(pred)}"
        page = viewer.get(url, headers={"HX-Request": "true"} if htmx else {})
        assert page.status_code == 200
        assert ("<html" in page.text) is not htmx
        shown = [int(i) for i in re.findall(r'/models/shapes/2/image/(\d+)"', page.text)]
        expected = {i for i, tp in pairs.items() if tp == (true, pred)}
        assert set(shown) == expected and len(shown) == len(expected), (true, pred)
        assert f'data-total="{len(expected)}"' in page.text
    empty = viewer.get("/models/shapes/2/cell?true=cat&pred=cat", headers={"HX-Request": "true"})
    assert empty.status_code == 200
    assert viewer.get("/models/shapes/2/cell?true=cat&pred=zebra").status_code == 404
    assert viewer.get("/models/shapes/2/cell?true=cat").status_code == 422


def test_thumbnails_are_served_by_item_id_only_for_evaluated_images(viewer, models_ws):
    from autovision.data.thumbnails import MEDIA_TYPE

    test_ids = [it.id for it in models_ws.dataset("shapes@1").split("test")]
    train_id = models_ws.dataset("shapes@1").split("train")[0].id
    image = viewer.get(f"/models/shapes/2/image/{test_ids[0]}")
    assert image.status_code == 200 and image.headers["content-type"] == MEDIA_TYPE
    assert "immutable" in image.headers["cache-control"]
    assert viewer.get(f"/models/shapes/2/image/{train_id}").status_code == 404
    assert viewer.get("/models/shapes/2/image/999999").status_code == 404
    assert viewer.get("/models/shapes/2/image/..%2F..%2Fautovision.db").status_code in (404, 422)


def test_compare_shows_both_summaries_and_per_label_f1_deltas(viewer, models_ws):
    from autovision.evaluation.stored import stored_evaluation

    page = viewer.get("/models/shapes/compare?a=1&b=2")
    assert page.status_code == 200
    a = stored_evaluation(models_ws, "shapes@1")["metrics"]
    b = stored_evaluation(models_ws, "shapes@2")["metrics"]
    assert f"{a['accuracy']:.3f}" in page.text and f"{b['accuracy']:.3f}" in page.text
    assert f"{b['accuracy'] - a['accuracy']:+.3f}" in page.text
    section = page.text[page.text.index('id="compare-labels"') :]
    for lab in ("cat", "dog"):
        fa, fb = a["per_label"][lab]["f1"], b["per_label"][lab]["f1"]
        row = re.search(rf'<td class="name">{lab}</td>.*?</tr>', section, re.S).group(0)
        assert f"{fa:.3f}" in row and f"{fb:.3f}" in row and f"{fb - fa:+.3f}" in row
    assert viewer.get("/models/shapes/compare?a=1&b=7").status_code == 404
    assert viewer.get("/models/shapes/compare?a=1").status_code == 422


def test_the_evaluation_is_computed_once_then_read(viewer, models_ws, monkeypatch):
    from autovision.evaluation import stored

    viewer.get("/models/shapes/2")
    stored._memo.clear()
    monkeypatch.setattr(stored, "_compute", lambda *a: pytest.fail("evaluated again"))
    assert viewer.get("/models/shapes/2").status_code == 200
    assert list((models_ws.cache_dir / "evaluations").rglob("*.json"))


def test_unknown_models_and_versions_are_404(viewer):
    assert viewer.get("/models/nope/1").status_code == 404
    page = viewer.get("/models/shapes/9")
    assert page.status_code == 404 and "has no version 9" in page.text
    assert viewer.get("/models/shapes/x").status_code == 422


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_and_nothing_changes_state(clients, role):
    client = clients[role]
    for url in ("/models", "/models/shapes/2", "/models/shapes/compare?a=1&b=2",
                "/models/shapes/2/cell?true=cat&pred=dog"):  # fmt: skip
        assert client.get(url).status_code == 200, (role, url)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/models").text).group(1)
    posted = client.post("/models/shapes/2", headers={"X-CSRF-Token": csrf})
    assert posted.status_code == 405


def test_pages_need_a_login(clients):
    anonymous = clients["anonymous"]
    for url in ("/models", "/models/shapes/2", "/models/shapes/2/image/1"):
        r = anonymous.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), url


def test_a_model_whose_dataset_cannot_be_evaluated_says_why(viewer, models_ws, tmp_path):
    models_ws.register_model(
        "m-broken", dataset="shapes", dataset_version=1, task="single-label",
        path=tmp_path / "missing", name="broken",
    )  # fmt: skip
    page = viewer.get("/models/broken/1")
    assert page.status_code == 200 and "Cannot evaluate this version" in page.text
