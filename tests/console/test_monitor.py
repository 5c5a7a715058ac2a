"""The Monitor page through TestClient: traffic charts, stored drift checks with their
plots, the review queue (label, confirm, skip: each answer returns the next item), roles,
CSRF, escaping, reviewed images into a new dataset version, and the Retrain link."""

from __future__ import annotations

import json

import pytest

from ._monitor import log_predictions, pets_model, stored_check

HX = {"HX-Request": "true"}


@pytest.fixture
def pets(workspace, tmp_path, image_bytes):
    from autovision.data.importer import import_dataset  # noqa: F401 - the dataset below

    pets_model(workspace, tmp_path)
    # smallest margin first: p-0002 (.05), p-0003 (.08), p-0001 (.10); p-0004 is sure
    ids = log_predictions(
        workspace,
        image_bytes,
        [(0.45, 0.35, 0.2), (0.40, 0.35, 0.25), (0.48, 0.12, 0.40), (0.95, 0.03, 0.02)],
    )
    return ids


def _audit(ws):
    return [json.loads(x) for x in ws.audit_log_path.read_text().splitlines()]


def test_index_lists_models_with_traffic_queue_and_verdict(client_as, workspace, pets):
    stored_check(workspace)
    client, _ = client_as("viewer")
    page = client.get("/monitor")
    assert page.status_code == 200
    assert '<a href="/monitor/pets">pets</a>' in page.text
    row = page.text.split('href="/monitor/pets"')[1]
    assert ">4<" in row and ">3<" in row and "verdict-drift" in row
    assert '<a href="/monitor" class="active"' in page.text  # the nav entry is live


def test_page_shows_charts_drift_plots_and_the_least_confident_item(client_as, workspace, pets):
    stored_check(workspace)
    client, _ = client_as("viewer")
    page = client.get("/monitor/pets?window=7d")
    assert page.status_code == 200
    html = page.text
    assert html.count('<svg class="chart"') == 2  # volume and confidence per day
    assert "Predictions per day" in html and "Mean confidence per day" in html
    assert "Predicted labels (share)" in html and "Top-1 confidence" in html
    assert "verdict-drift" in html and "failing: confidence" in html
    assert f'data-item="{pets[1]}"' in html  # smallest margin first
    assert f"/monitor/pets/review/{pets[1]}/image" in html
    # a viewer sees the queue but no answer buttons, no drift run, no feedback form
    assert "data-shortcuts" not in html and "Check drift now" not in html
    assert "Add reviewed images" not in html
    assert client.get("/monitor/nobody").status_code == 404


def test_window_buckets_hourly_by_default(client_as, workspace, pets):
    client, _ = client_as("reviewer")
    html = client.get("/monitor/pets").text
    assert "Predictions per hour" in html
    assert "data-shortcuts" in html and 'data-key="1"' in html and 'data-key="enter"' in html
    assert 'data-key="s"' in html


def test_review_image_served_by_prediction_id(client_as, workspace, pets):
    client, _ = client_as("viewer")
    r = client.get(f"/monitor/pets/review/{pets[1]}/image")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    assert "immutable" in r.headers["cache-control"]
    assert client.get("/monitor/pets/review/p-nope/image").status_code == 404
    assert client.get(f"/monitor/other/review/{pets[1]}/image").status_code == 404


def test_label_confirm_and_skip_each_swap_in_the_next_item(client_as, workspace, pets):
    client, csrf = client_as("reviewer")
    first, second, third = pets[1], pets[2], pets[0]
    r = client.post(
        f"/monitor/pets/review/{first}/label",
        data={"label": "dog"},
        headers={**HX, "X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and 'id="queued-stat" hx-swap-oob' in r.text
    assert r.text.lstrip().startswith('<section class="card" id="review">')
    assert f'data-item="{second}"' in r.text
    r = client.post(  # Enter: the guess ("cat")
        f"/monitor/pets/review/{second}/label",
        data={"label": "cat"},
        headers={**HX, "X-CSRF-Token": csrf},
    )
    assert f'data-item="{third}"' in r.text
    r = client.post(f"/monitor/pets/review/{third}/skip", headers={**HX, "X-CSRF-Token": csrf})
    assert "Nothing to review" in r.text
    from autovision.monitoring import review

    stats = review.stats(workspace, "pets")
    assert (stats["labeled"], stats["skipped"], stats["queued"]) == (2, 1, 0)
    row = review.get(workspace, first)
    assert row.review_labels == ["dog"] and row.reviewer == "reviewer-user"
    labeled = [e for e in _audit(workspace) if e.get("action") == "review.label"]
    assert labeled and labeled[-1].get("user") == "reviewer-user"


def test_a_bad_label_is_shown_not_applied(client_as, workspace, pets):
    client, csrf = client_as("admin")
    r = client.post(
        f"/monitor/pets/review/{pets[1]}/label",
        data={"label": "<b>wolf</b>"},
        headers={**HX, "X-CSRF-Token": csrf},
    )
    assert (
        "alert-error" in r.text and "&lt;b&gt;wolf&lt;/b&gt;" in r.text and "<b>wolf" not in r.text
    )
    assert f'data-item="{pets[1]}"' in r.text


def test_plain_form_posts_redirect_back(client_as, workspace, pets):
    client, csrf = client_as("reviewer")
    r = client.post(
        f"/monitor/pets/review/{pets[1]}/skip", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/monitor/pets#review"


@pytest.mark.parametrize("role", ["viewer", "trainer"])
def test_only_reviewers_and_admins_review(client_as, workspace, pets, role):
    client, csrf = client_as(role)
    for path, data in (
        (f"/monitor/pets/review/{pets[1]}/label", {"label": "dog"}),
        (f"/monitor/pets/review/{pets[1]}/skip", {}),
        ("/monitor/pets/drift", {"model": "m-pets-1"}),
    ):
        r = client.post(path, data={**data, "csrf_token": csrf})
        assert r.status_code == 403, path
    from autovision.monitoring import review

    assert review.stats(workspace, "pets")["labeled"] == 0


def test_review_needs_the_csrf_token(client_as, workspace, pets):
    client, _ = client_as("reviewer")
    r = client.post(f"/monitor/pets/review/{pets[1]}/label", data={"label": "dog"})
    assert r.status_code == 403
    r = client.post(
        f"/monitor/pets/review/{pets[1]}/label",
        data={"label": "dog"},
        headers={"X-CSRF-Token": "forged"},
    )
    assert r.status_code == 403


def test_user_text_is_escaped(client_as, workspace, tmp_path, image_bytes):
    evil = "<img src=x onerror=alert(1)>"
    pets_model(workspace, tmp_path, labels=(evil, "dog", "fox"))
    log_predictions(workspace, image_bytes, [(0.4, 0.35, 0.25)], labels=(evil, "dog", "fox"))
    client, _ = client_as("reviewer")
    html = client.get("/monitor/pets").text
    assert evil not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_reviewed_images_into_a_new_version_then_retrain_link(
    client_as, workspace, pets, image_bytes
):
    from autovision.data.dataset import Item
    from autovision.monitoring import review

    sha = workspace.blobs.put(image_bytes(0, 24, 1))
    workspace.create_version(
        "pets",
        [Item(1, sha, "a.png", ("cat",), "train", 24, 24, "PNG")],
        multi_label=False,
    )
    review.label(workspace, pets[1], ["dog"])
    review.label(workspace, pets[0], ["cat"])
    viewer, vcsrf = client_as("reviewer")  # a reviewer may not edit datasets
    assert viewer.post("/monitor/pets/feedback", data={"csrf_token": vcsrf}).status_code == 403
    client, csrf = client_as("trainer")
    page = client.get("/monitor/pets").text
    assert 'href="/train?dataset=pets"' in page  # Retrain: the Train page, dataset chosen
    r = client.post(
        "/monitor/pets/feedback", data={"split": "train"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 200 and "pets@2" in r.text
    assert 'href="/train?dataset=pets%402"' in r.text
    v2 = workspace.dataset("pets")
    assert v2.version == 2 and v2.params["feedback"]["added"] == 2
    events = [e for e in _audit(workspace) if e.get("action") == "dataset.add_feedback"]
    assert events[-1].get("user") == "trainer-user"


def test_drift_check_runs_monitor_and_shows_its_result(client_as, workspace, pets, monkeypatch):
    from autovision.monitoring import monitor as monitor_mod

    calls = []

    def fake(ws, ref, **kw):
        calls.append((ref, kw))
        stored_check(ws, verdict="no_drift")
        return {}

    monkeypatch.setattr(monitor_mod, "monitor", fake)
    client, csrf = client_as("reviewer")
    r = client.post(
        "/monitor/pets/drift",
        data={"model": "m-pets-1", "window": "7d"},
        headers={**HX, "X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and "verdict-no_drift" in r.text
    assert calls == [("m-pets-1", {"since": "7d"})]
    r = client.post(
        "/monitor/pets/drift", data={"model": "../etc"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert "is not a version of pets" in r.text and len(calls) == 1


def test_a_two_label_model_says_its_queue_stays_empty_and_an_admin_raises_it(
    client_as, workspace, tmp_path, image_bytes
):
    """A 2-label model's top confidence is at least 0.5: at the default "review below 0.5"
    nothing is ever queued as uncertain. The page says so; an admin raises the threshold
    there (a reviewer cannot, even by posting) and the predictions arrive."""
    from autovision.monitoring import review

    pets_model(workspace, tmp_path, labels=("cat", "dog"))
    ids = log_predictions(workspace, image_bytes, [(0.55, 0.45), (0.9, 0.1)], labels=("cat", "dog"))
    reviewer, rcsrf = client_as("reviewer")
    page = reviewer.get("/monitor/pets").text
    assert 'id="never-low"' in page and "With 2 labels" in page and "Nothing to review" in page
    assert "--review-below 0.7" in page and 'class="review-below-form"' not in page
    r = reviewer.post("/monitor/pets/review-below", data={"value": "0.7", "csrf_token": rcsrf})
    assert r.status_code == 403 and review.review_below(workspace, "pets") == 0.5

    admin, csrf = client_as("admin")
    assert 'class="review-below-form"' in admin.get("/monitor/pets").text
    r = admin.post("/monitor/pets/review-below", data={"value": "0.7"})
    assert r.status_code == 403  # no CSRF token
    r = admin.post(
        "/monitor/pets/review-below", data={"value": "1.5"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert "alert-error" in r.text and "(0, 1]" in r.text
    r = admin.post(
        "/monitor/pets/review-below", data={"value": "x"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert "is not a number" in r.text
    r = admin.post(
        "/monitor/pets/review-below", data={"value": "0.7"}, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 200 and 'id="never-low"' not in r.text
    assert f'data-item="{ids[0]}"' in r.text and 'id="queued-stat" hx-swap-oob' in r.text
    assert review.review_below(workspace, "pets") == 0.7
    event = [e for e in _audit(workspace) if e.get("action") == "model.settings"][-1]
    assert event.get("user") == "admin-user"
    assert (
        admin.post(
            "/monitor/nope/review-below", data={"value": "0.7"}, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 404
    )


def test_three_labels_at_the_default_threshold_have_no_such_note(client_as, workspace, pets):
    client, _ = client_as("admin")
    assert 'id="never-low"' not in client.get("/monitor/pets").text
