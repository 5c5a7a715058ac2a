"""The dataset version page: distribution, warnings, gallery filters and keyset pages,
thumbnails with their cache headers, item details, exclude/relabel making a new version
with its diff, "Run checks", roles, CSRF and escaping of user text."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

from autovision.data.dataset import Item

XSS = "<img src=x onerror=alert(1)>"
LABELS = ["cat", "dog", XSS]


def png(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_items(ws, n: int = 75) -> list[Item]:
    items = []
    for i in range(1, n + 1):
        # 1..3 share their blobs with 4..6: exact duplicates.
        sha = ws.blobs.put(png(i if i > 6 else (i - 1) % 3))
        label = LABELS[i % 3] if i > 3 else "cat"
        source = f"{label}/photo_{i}.png" if label != XSS else f"x/{XSS}_{i}.png"
        items.append(
            Item(
                id=i,
                sha256=sha,
                source=source,
                labels=(label,),
                split=("train", "train", "validation", "test")[i % 4],
                width=16,
                height=16,
                format="PNG",
                metadata={"camera": XSS if i == 7 else "cam-1"},
                stats={"brightness": 0.5},
            )
        )
    return items


@pytest.fixture
def pets(workspace):
    return workspace.create_version("pets", make_items(workspace), multi_label=False)


def tile_ids(text: str) -> list[int]:
    return [int(x) for x in re.findall(r'class="tile[^"]*" data-id="(\d+)"', text)]


def page_of(client, path: str):
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.text


# ---- the page ---------------------------------------------------------------------------------


def test_page_shows_distribution_warnings_and_first_tiles(client_as, pets):
    client, _ = client_as("viewer")
    text = page_of(client, "/datasets/pets/1")
    assert "<svg" in text and "Images per label and split" in text
    assert "75 images" in text and "3 labels" in text
    assert "Under the recommended 100 images" in text  # 25 images per label
    assert tile_ids(text) == list(range(1, 61))  # first keyset page of 60
    assert 'hx-trigger="revealed"' in text  # the last tile fetches the next page
    assert "/datasets/pets/1/gallery?after=60" in text
    assert 'id="edit-form"' not in text and "Run checks" not in text  # viewer: no edits


def test_a_label_without_training_images_is_an_error_on_the_page(client_as, workspace):
    """Look-alikes are split as one group, so a label can land in validation and test only;
    training refuses it: the page says so (red in the chart too) before anyone trains."""
    from dataclasses import replace

    items = [
        replace(it, split="test" if it.labels == ("dog",) else it.split)
        for it in make_items(workspace)
    ]
    workspace.create_version("pets", items, multi_label=False)
    client, _ = client_as("viewer")
    text = page_of(client, "/datasets/pets/1")
    warning = text[text.index('id="warn-no-train"') :].split("</ul>")[0]
    assert "No training images" in warning and "training refuses this label" in warning
    assert '?label=dog#gallery-title">dog</a> <span class="muted">24</span>' in warning
    assert "Enough images for every label" not in text
    assert 'fill="#b42318"' in text  # the dog row's name is red in the chart
    workspace.create_version("fine", make_items(workspace), multi_label=False)
    assert 'id="warn-no-train"' not in page_of(client, "/datasets/fine/1")


def test_unknown_version_is_404(client_as, pets):
    client, _ = client_as("viewer")
    assert client.get("/datasets/pets/9").status_code == 404
    assert client.get("/datasets/nope/1").status_code == 404
    assert client.get("/datasets/pets/1/items/999").status_code == 404
    assert client.get("/thumbs/pets/1/999").status_code == 404


def test_datasets_list_links_to_the_version_page(client_as, pets):
    client, _ = client_as("viewer")
    assert 'href="/datasets/pets/1"' in client.get("/datasets/table").text


def test_infinite_scroll_pages_follow_the_cursor(client_as, pets):
    client, _ = client_as("viewer")
    text = page_of(client, "/datasets/pets/1/gallery?after=60")
    assert tile_ids(text) == list(range(61, 76))
    assert 'hx-trigger="revealed"' not in text  # the last page
    assert 'id="gallery"' not in text  # tiles only: appended after the last tile


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("label=dog", [i for i in range(4, 76) if i % 3 == 1]),
        ("split=test", [i for i in range(1, 76) if i % 4 == 3]),
        ("filename=PHOTO_7", [i for i in (7, *range(70, 76)) if i % 3 != 2]),
        (
            "label=cat&split=train",
            [i for i in range(1, 76) if (i <= 3 or i % 3 == 0) and i % 4 in (0, 1)],
        ),
        ("issue=exact_duplicates", [1, 2, 3, 4, 5, 6]),
    ],
)
def test_filters(client_as, pets, query, expect):
    client, _ = client_as("viewer")
    text = page_of(client, f"/datasets/pets/1/gallery?{query}")
    assert tile_ids(text) == expect[:60]
    assert f"<strong>{len(expect)}</strong>" in text
    response = client.get(f"/datasets/pets/1/gallery?{query}")
    assert response.headers["HX-Push-Url"] == f"/datasets/pets/1?{query}"
    # The page itself takes the same filters (a bookmark, the pushed URL).
    assert tile_ids(page_of(client, f"/datasets/pets/1?{query}")) == expect[:60]


def test_filter_by_a_hostile_label_is_escaped(client_as, pets):
    client, _ = client_as("viewer")
    from urllib.parse import quote

    text = page_of(client, f"/datasets/pets/1/gallery?label={quote(XSS)}")
    assert tile_ids(text) == [i for i in range(4, 76) if i % 3 == 2][:60]
    assert XSS not in text and html_lib.escape(XSS) in text


def test_invalid_filter_says_why(client_as, pets):
    client, _ = client_as("viewer")
    text = page_of(client, "/datasets/pets/1/gallery?issue=bogus")
    assert "unknown issue" in text and tile_ids(text) == []


def wait_issues(client, path: str = "/datasets/pets/1/issues") -> str:
    """The issue filter once the version's issues are computed (in the background)."""
    end = time.monotonic() + 30
    while "finding issues" in (text := page_of(client, path)):
        assert time.monotonic() < end
        time.sleep(0.05)
    return text


def test_issue_filter_options_once_computed(client_as, pets):
    client, _ = client_as("viewer")
    text = wait_issues(client)
    assert re.search(r'value="exact_duplicates"[^>]*>Exact duplicates \(6\)', text)
    assert "label_issues" not in text  # not computed: not offered
    assert text.startswith('<label id="issue-filter" hx-target="this"')  # not the gallery


def test_page_escapes_labels_filenames_and_metadata(client_as, pets):
    client, _ = client_as("trainer")
    page = page_of(client, "/datasets/pets/1")
    detail = page_of(client, "/datasets/pets/1/items/7")
    tiles = page_of(client, "/datasets/pets/1/gallery?filename=x/")
    for text in (page, detail, tiles):
        assert XSS not in text
    assert html_lib.escape(XSS) in page and html_lib.escape(XSS) in detail
    assert "onerror=alert(1)&gt;_" in tiles  # the hostile file names, as text


# ---- thumbnails and details -------------------------------------------------------------------


def test_thumbnail_is_cached_immutable_with_the_sha_as_etag(client_as, pets):
    client, _ = client_as("viewer")
    first = client.get("/thumbs/pets/1/10")
    assert first.status_code == 200
    assert first.headers["content-type"] in ("image/webp", "image/jpeg")
    assert "immutable" in first.headers["cache-control"]
    assert "max-age=31536000" in first.headers["cache-control"]
    assert "private" in first.headers["cache-control"]
    sha = pets.by_id()[10].sha256
    assert first.headers["etag"] == f'"{sha}-256"'
    Image.open(io.BytesIO(first.content)).verify()
    again = client.get("/thumbs/pets/1/10", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/thumbs/pets/1/10?size=512").headers["etag"] == f'"{sha}-512"'
    assert client.get("/thumbs/pets/1/10?size=13").status_code == 400


def test_thumbnails_need_a_session(app, pets):
    from fastapi.testclient import TestClient

    from ._helpers import BASE

    anonymous = TestClient(app, base_url=BASE)
    assert anonymous.get("/thumbs/pets/1/10", follow_redirects=False).status_code in (303, 401)


def test_item_detail_has_fields_issues_and_duplicates(client_as, pets):
    client, _ = client_as("viewer")
    early = page_of(client, "/datasets/pets/1/items/4")  # never waits for the issues
    assert "dog/photo_4.png" in early
    assert "Still looking" in early or "Exact duplicates" in early
    wait_issues(client)
    text = page_of(client, "/datasets/pets/1/items/4")
    assert "Image #4" in text and "16 × 16 px" in text and "dog/photo_4.png" in text
    assert "Conflicting labels" in text  # 1 (cat) and 4 (dog) are the same image
    assert "/thumbs/pets/1/1" in text  # its duplicate, with a thumbnail
    assert 'hx-get="/datasets/pets/1/items/1"' in text
    assert "cam-1" in text


# ---- edits ------------------------------------------------------------------------------------


def test_exclude_makes_a_version_and_shows_the_diff(client_as, pets, workspace):
    client, csrf = client_as("trainer")
    response = client.post(
        "/datasets/pets/1/exclude",
        data={"ids": ["8", "9"], "csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/datasets/pets/2"
    assert workspace.versions("pets") == [1, 2]
    assert {8, 9}.isdisjoint(workspace.dataset("pets@2").by_id())
    text = page_of(client, "/datasets/pets/2")
    assert "@1" in text and "2 removed" in text
    assert "/thumbs/pets/1/8" in text and "/thumbs/pets/1/9" in text  # from the parent
    events = [json.loads(x) for x in workspace.audit_log_path.read_text().splitlines()]
    done = [e for e in events if e.get("action") == "dataset.exclude"]
    assert done[-1]["user"] == "trainer-user" and done[-1]["via"] == "console"


def test_change_label_makes_a_version_with_the_relabel_diff(client_as, pets, workspace):
    client, csrf = client_as("admin")
    response = client.post(
        "/datasets/pets/1/relabel",
        data={"ids": ["9", "12"], "label": "dog", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/datasets/pets/2"
    ds = workspace.dataset("pets@2")
    assert ds.by_id()[9].labels == ("dog",) and ds.by_id()[12].labels == ("dog",)
    text = page_of(client, "/datasets/pets/2")
    assert "2 relabeled" in text and "<s>cat</s>" in text and "<strong>dog</strong>" in text
    # Relabelling to what they already are makes no version.
    again = client.post(
        "/datasets/pets/2/relabel",
        data={"ids": ["9"], "label": "dog", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert again.headers["location"] == "/datasets/pets/2?unchanged=1"
    assert workspace.versions("pets") == [1, 2]
    assert "Nothing changed" in page_of(client, again.headers["location"])


def test_relabel_to_a_hostile_label_is_stored_and_shown_as_text(client_as, pets, workspace):
    client, csrf = client_as("trainer")
    response = client.post(
        "/datasets/pets/1/relabel",
        data={"ids": ["12"], "label": "<svg onload=alert(2)>", "csrf_token": csrf},
    )
    assert response.status_code == 200, response.text
    assert workspace.dataset("pets@2").by_id()[12].labels == ("<svg onload=alert(2)>",)
    text = page_of(client, "/datasets/pets/2")
    assert "<svg onload" not in text and "&lt;svg onload=alert(2)&gt;" in text


def test_bad_edits_are_refused_with_a_reason(client_as, pets, workspace):
    client, csrf = client_as("trainer")
    unknown = client.post("/datasets/pets/1/exclude", data={"ids": ["999"], "csrf_token": csrf})
    assert unknown.status_code == 400 and "no image with id 999" in unknown.text
    bad = client.post(
        "/datasets/pets/1/relabel", data={"ids": ["3"], "label": "a/b", "csrf_token": csrf}
    )
    assert bad.status_code == 400 and "path separator" in bad.text
    empty = client.post(
        "/datasets/pets/1/relabel", data={"ids": ["3"], "label": " ", "csrf_token": csrf}
    )
    assert empty.status_code == 400
    assert workspace.versions("pets") == [1]


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_readers_cannot_edit_even_by_posting(client_as, pets, workspace, role):
    client, csrf = client_as(role)
    for path, data in [
        ("/datasets/pets/1/exclude", {"ids": ["8"]}),
        ("/datasets/pets/1/relabel", {"ids": ["8"], "label": "dog"}),
        ("/datasets/pets/1/checks", {}),
    ]:
        response = client.post(path, data={**data, "csrf_token": csrf})
        assert response.status_code == 403, path
        assert "may not do this (dataset.edit)" in response.text
    assert workspace.versions("pets") == [1]


def test_edits_need_the_csrf_token(client_as, pets, workspace):
    client, csrf = client_as("trainer")
    for token in (None, "wrong"):
        data = {"ids": ["8"], **({"csrf_token": token} if token else {})}
        assert client.post("/datasets/pets/1/exclude", data=data).status_code == 403
        assert (
            client.post("/datasets/pets/1/relabel", data={**data, "label": "dog"}).status_code
            == 403
        )
    assert client.post("/datasets/pets/1/checks", data={}).status_code == 403
    assert workspace.versions("pets") == [1]


# ---- checks -----------------------------------------------------------------------------------


@pytest.fixture
def fake_checks(monkeypatch):
    """``autovision.checks.run.check_dataset`` (issue 14) stood in for: it stores a label-issue
    and an outlier result as the real one does, reporting progress by stage."""
    from autovision.checks.store import save_check

    calls = []

    def check_dataset(ws, ref, *, progress=None, **kwargs):
        ds = ws.dataset(ref)
        for i in range(3):
            progress("embedding", i + 1, 3)
        issues = [
            {
                "id": 10,
                "source": "s",
                "split": "train",
                "label": "cat",
                "suggested": "dog",
                "score": 0.01,
                "suggested_score": 0.9,
            }
        ]
        save_check(ws, ds, "label_issues", {"label_issues": issues, "label_issues_test": []})
        save_check(
            ws, ds, "outliers", {"outliers": [{"id": 11, "score": 3.0}, {"id": 12, "score": 2.0}]}
        )
        calls.append(ref)
        return {
            "label_issues": issues,
            "label_issues_test": [],
            "outliers": [{}, {}],
            "content_duplicates": {"pairs": []},
        }

    module = types.ModuleType("autovision.checks.run")
    module.check_dataset = check_dataset
    monkeypatch.setitem(sys.modules, "autovision.checks.run", module)
    return calls


def test_run_checks_in_the_background_then_show_counts(client_as, pets, fake_checks, workspace):
    client, csrf = client_as("trainer")
    started = client.post(
        "/datasets/pets/1/checks", headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert started.status_code == 200 and 'id="checks"' in started.text
    end = time.monotonic() + 30
    while 'data-status="done"' not in (text := client.get("/datasets/pets/1/checks").text):
        assert 'data-status="failed"' not in text, text
        assert time.monotonic() < end
        time.sleep(0.05)
    assert fake_checks == ["pets@1"]
    assert (
        "<strong>1</strong> likely label errors" in text and "<strong>2</strong> outliers" in text
    )
    assert "?issue=label_issues" in text and "Run the checks again" in text
    # The findings are in the gallery's issue filter (the index was recomputed with them).
    options = wait_issues(client)
    assert re.search(r'value="label_issues"[^>]*>Label issues \(train/validation\) \(1\)', options)
    assert re.search(r'value="outliers"[^>]*>Outliers \(2\)', options)
    assert tile_ids(page_of(client, "/datasets/pets/1/gallery?issue=outliers")) == [11, 12]
    assert "suggested" in page_of(client, "/datasets/pets/1/items/10")
    viewer, _ = client_as("viewer")
    seen = viewer.get("/datasets/pets/1").text
    assert "likely label errors" in seen and "Run the checks again" not in seen
    events = [json.loads(x) for x in workspace.audit_log_path.read_text().splitlines()]
    assert any(e.get("user") == "trainer-user" for e in events)


def test_a_failing_check_says_why(client_as, pets, monkeypatch):
    def broken(ws, ref, **kwargs):
        from autovision.errors import DatasetError

        raise DatasetError(f"{ref}: fewer than 2 labels")

    module = types.ModuleType("autovision.checks.run")
    module.check_dataset = broken
    monkeypatch.setitem(sys.modules, "autovision.checks.run", module)
    client, csrf = client_as("admin")
    client.post("/datasets/pets/1/checks", data={"csrf_token": csrf})
    end = time.monotonic() + 30
    while 'data-status="failed"' not in (text := client.get("/datasets/pets/1/checks").text):
        assert time.monotonic() < end
        time.sleep(0.05)
    assert "fewer than 2 labels" in text
