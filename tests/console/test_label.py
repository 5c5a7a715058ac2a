"""The Label page through TestClient: the queue of unlabeled images (pre-labels of the
production model, least certain first), answers into the draft (each returns the next
image), "Save as new version" (lineage, audit with the user), roles, CSRF, escaping."""

from __future__ import annotations

import json

import pytest

from autovision.data import labeling
from tests.data._labeling import make_dataset, register_stub

HX = {"HX-Request": "true"}


@pytest.fixture
def leaves(workspace, image_bytes):
    return make_dataset(workspace, image_bytes)


@pytest.fixture
def stub_model(workspace, leaves, tmp_path, monkeypatch):
    """A production model of ``leaves`` whose guesses are fixed: image 8 least certain."""
    register_stub(workspace, tmp_path, "leaves", ["healthy", "rust"])
    conf = {5: 0.9, 6: 0.7, 7: 0.8, 8: 0.55, 9: 0.6, 10: 0.95}
    sha = {it.id: it.sha256 for it in leaves.items}
    probs = {sha[i]: [c, 1 - c] if i % 2 else [1 - c, c] for i, c in conf.items()}
    monkeypatch.setattr(
        labeling, "_predict", lambda ws, mv, rows: {r["sha256"]: probs[r["sha256"]] for r in rows}
    )


def _audit(ws):
    return [json.loads(x) for x in ws.audit_log_path.read_text().splitlines()]


def test_index_counts_unlabeled_images(client_as, workspace, leaves):
    client, _ = client_as("viewer")
    html = client.get("/label").text
    assert '<a href="/label/leaves">leaves</a>' in html
    assert ">6<" in html and "no production model" in html


def test_page_without_a_model_lists_in_id_order(client_as, workspace, leaves):
    client, _ = client_as("trainer")
    html = client.get("/label/leaves").text
    assert 'data-item="5"' in html and "no production model" in html
    assert "/label/leaves/1/items/5/image" in html
    assert 'data-key="1"' in html and 'value="healthy"' in html and 'data-key="s"' in html
    assert 'data-key="enter"' not in html  # no guess to confirm
    image = client.get("/label/leaves/1/items/5/image")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    assert client.get("/label/leaves/1/items/99/image").status_code == 404
    assert client.get("/label/nope").status_code == 404


def test_prelabelled_least_certain_first_and_confirm_with_enter(client_as, workspace, stub_model):
    client, csrf = client_as("reviewer")
    html = client.get("/label/leaves").text
    assert 'data-item="8"' in html and "pre-labelled by leaves@1" in html
    assert "The model guesses <strong" in html and "55%" in html
    # Enter confirms the guess: the guess button carries data-key="enter"
    guess = html.split('data-key="enter"')[0].rsplit("<button", 1)[1]
    assert 'value="rust"' in guess  # image 8: [0.45, 0.55]
    r = client.post(
        "/label/leaves/items/8", data={"label": "rust"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 200 and 'data-item="9"' in r.text  # then 0.6
    assert "<strong>1</strong> labeled" in r.text
    r = client.post("/label/leaves/items/9/skip", headers={**HX, "X-CSRF-Token": csrf})
    assert 'data-item="6"' in r.text and "<strong>1</strong> skipped" in r.text
    r = client.post(
        "/label/leaves/items/6", data={"new_label": "blight"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert 'data-item="7"' in r.text and 'value="blight"' in r.text
    assert workspace.dataset("leaves").version == 1  # the draft is not a version yet

    r = client.post("/label/leaves/save", headers={**HX, "X-CSRF-Token": csrf})
    assert "Saved 2 label(s) as <strong>leaves@2</strong>" in r.text
    v2 = workspace.dataset("leaves")
    assert v2.params["labeled"] == [6, 8] and v2.parent_version == 1
    assert v2.by_id()[8].labels == ("rust",) and v2.by_id()[6].labels == ("blight",)
    event = [e for e in _audit(workspace) if e.get("action") == "dataset.label"][-1]
    assert event["user"] == "reviewer-user" and event["labeled"] == [6, 8]
    assert labeling.draft(workspace, "leaves") == {}


def test_discard_forgets_the_draft(client_as, workspace, leaves):
    client, csrf = client_as("trainer")
    client.post("/label/leaves/items/5", data={"label": "rust", "csrf_token": csrf})
    r = client.post("/label/leaves/discard", headers={**HX, "X-CSRF-Token": csrf})
    assert "Draft discarded (1 answer(s))" in r.text and 'data-item="5"' in r.text
    assert workspace.dataset("leaves").version == 1


def test_plain_form_posts_redirect_back(client_as, workspace, leaves):
    client, csrf = client_as("trainer")
    r = client.post(
        "/label/leaves/items/5",
        data={"label": "rust", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/label/leaves"
    assert labeling.draft(workspace, "leaves") == {5: ["rust"]}


def test_a_viewer_may_not_label_even_by_hand(client_as, workspace, leaves):
    client, csrf = client_as("viewer")
    html = client.get("/label/leaves").text
    assert "data-shortcuts" not in html and "your role: viewer" in html
    for path, data in (
        ("/label/leaves/items/5", {"label": "rust"}),
        ("/label/leaves/items/5/skip", {}),
        ("/label/leaves/save", {}),
        ("/label/leaves/discard", {}),
    ):
        assert client.post(path, data={**data, "csrf_token": csrf}).status_code == 403, path
    assert labeling.draft(workspace, "leaves") == {}


def test_labeling_needs_the_csrf_token(client_as, workspace, leaves):
    client, _ = client_as("trainer")
    assert client.post("/label/leaves/items/5", data={"label": "rust"}).status_code == 403
    assert client.post("/label/leaves/save", headers={"X-CSRF-Token": "x"}).status_code == 403
    assert labeling.draft(workspace, "leaves") == {}


def test_bad_answers_are_explained(client_as, workspace, leaves):
    client, csrf = client_as("trainer")
    h = {**HX, "X-CSRF-Token": csrf}
    r = client.post("/label/leaves/items/1", data={"label": "rust"}, headers=h)
    assert "labeled already" in r.text
    r = client.post("/label/leaves/items/5", data={"new_label": "a/b"}, headers=h)
    assert "path separator" in r.text
    r = client.post("/label/leaves/items/5", data={"label": ["rust", "healthy"]}, headers=h)
    assert "single-label" in r.text and labeling.draft(workspace, "leaves") == {}


def test_labels_and_filenames_are_escaped(client_as, workspace, image_bytes):
    evil = "<img src=x onerror=alert(1)>"
    make_dataset(workspace, image_bytes, name="evil", labels=(evil, "ok"), label_text="<b>x")
    client, csrf = client_as("trainer")
    html = client.get("/label/evil").text
    assert evil not in html and "<b>x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;b&gt;x-5.png" in html
    r = client.post(
        "/label/evil/items/5", data={"label": evil}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert evil not in r.text and labeling.draft(workspace, "evil") == {5: [evil]}
