"""The datasets page: the list, imports by upload and by server path, roles, limits and
escaping of user text."""

from __future__ import annotations

import io
import json
import zipfile

from fastapi.testclient import TestClient

from ._helpers import BASE, csrf_of, job_id_of, wait_job

XSS = "<img src=x onerror=alert(1)>"


def _upload(client, csrf, name, files, **fields):
    return client.post(
        "/datasets/import",
        data={"name": name, **fields},
        files=files,
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_empty_list(client_as):
    client, _ = client_as("trainer")
    html = client.get("/datasets").text
    assert "No datasets yet" in html and 'action="/datasets/import"' in html
    assert "/datasets/import-path" not in html  # admins only


def test_zip_import_shows_progress_then_the_dataset(client_as, class_zip, workspace):
    client, csrf = client_as("trainer")
    started = _upload(client, csrf, "pets", {"file": ("pets.zip", class_zip(), "application/zip")})
    assert started.status_code == 200, started.text
    assert "<progress" in started.text or 'data-status="done"' in started.text
    done = wait_job(client, job_id_of(started.text))
    assert 'data-status="done"' in done, done
    assert "12</strong> images with 2 labels" in done and "pets@1" in done
    assert "from pets.zip" in done
    ds = workspace.dataset("pets")
    assert len(ds.items) == 12 and set(ds.label_counts()) == {"cat", "dog"}
    table = client.get("/datasets/table").text
    assert ">pets<" in table and ">v1<" in table and ">12<" in table
    assert "analysing" not in table  # the summary was computed with the import
    assert "label warnings" in table  # 6 images per label is under the minimum
    events = [
        e
        for e in map(json.loads, workspace.audit_log_path.read_text().splitlines())
        if e.get("action") == "dataset.import"
    ]
    assert events[-1]["user"] == "trainer-user" and events[-1]["via"] == "console"
    assert events[-1]["role"] == "trainer"
    assert not list((workspace.root / "tmp").glob("console-upload-*"))  # cleaned up


def test_second_import_is_a_new_version(client_as, class_zip, workspace):
    client, csrf = client_as("admin")
    for _ in range(2):
        started = _upload(client, csrf, "pets", {"file": ("p.zip", class_zip(), "application/zip")})
        assert 'data-status="done"' in wait_job(client, job_id_of(started.text))
    assert workspace.versions("pets") == [1, 2]
    table = client.get("/datasets/table").text
    assert ">v2<" in table


def test_import_without_htmx_redirects_to_the_job(client_as, class_zip):
    client, csrf = client_as("trainer")
    response = client.post(
        "/datasets/import",
        data={"name": "pets", "csrf_token": csrf},
        files={"file": ("pets.zip", class_zip(), "application/zip")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/datasets?job=")
    page = client.get(response.headers["location"]).text
    assert "import-job-" in page


def test_csv_with_a_zip_of_images(client_as, image_bytes, workspace):
    client, csrf = client_as("trainer")
    images = {f"img/{i}.png": image_bytes(i % 2, seed=i) for i in range(8)}
    rows = "".join(f"img/{i}.png,{'red' if i % 2 == 0 else 'green'}\n" for i in range(8))
    started = _upload(
        client,
        csrf,
        "colours",
        {
            "file": ("labels.csv", rows.encode(), "text/csv"),
            "images": ("images.zip", _zip(images), "application/zip"),
        },
    )
    done = wait_job(client, job_id_of(started.text))
    assert 'data-status="done"' in done, done
    assert workspace.dataset("colours").label_counts() == {"green": 4, "red": 4}


def test_uploads_are_recorded_under_their_own_name_not_the_temp_folder(
    client_as, class_zip, image_bytes, workspace
):
    """The version's source, its images' sources and the page name the uploaded file
    (``leaves.zip:rust/000.png``; a CSV's rows as written), not the removed
    ``tmp/console-upload-*`` folder."""
    client, csrf = client_as("trainer")
    zipped = class_zip(labels=("rust", "healthy"))
    started = _upload(client, csrf, "leaves", {"file": ("leaves.zip", zipped, "application/zip")})
    assert 'data-status="done"' in wait_job(client, job_id_of(started.text))
    images = {f"img/{i}.png": image_bytes(i % 2, seed=i) for i in range(4)}
    rows = "".join(f"img/{i}.png,{'red' if i % 2 == 0 else 'green'}\n" for i in range(4))
    files = {
        "file": ("colours.csv", rows.encode(), "text/csv"),
        "images": ("images.zip", _zip(images), "application/zip"),
    }
    started = _upload(client, csrf, "colours", files)
    assert 'data-status="done"' in wait_job(client, job_id_of(started.text))

    leaves, colours = workspace.dataset("leaves"), workspace.dataset("colours")
    assert leaves.source == "leaves.zip" and colours.source == "colours.csv"
    assert {it.source for it in leaves.items if it.labels == ("rust",)} == {
        f"leaves.zip:rust/{i:03d}.png" for i in range(6)
    }
    assert sorted(it.source for it in colours.items) == [f"img/{i}.png" for i in range(4)]
    for page in ("/datasets/leaves/1", "/datasets/colours/1"):
        html = client.get(page).text
        assert "console-upload-" not in html and str(workspace.root) not in html
    assert "from leaves.zip" in client.get("/datasets/leaves/1").text


def test_jsonl_with_a_zip_of_images(client_as, image_bytes, workspace):
    client, csrf = client_as("trainer")
    images = {f"{i}.png": image_bytes(i % 2, seed=i) for i in range(4)}
    rows = "".join(
        json.dumps(
            {
                "imageGcsUri": f"{i}.png",
                "classificationAnnotation": {"displayName": "a" if i % 2 else "b"},
            }
        )
        + "\n"
        for i in range(4)
    )
    started = _upload(
        client,
        csrf,
        "letters",
        {
            "file": ("rows.jsonl", rows.encode(), "application/jsonl"),
            "images": ("imgs.zip", _zip(images), "application/zip"),
        },
    )
    done = wait_job(client, job_id_of(started.text))
    assert 'data-status="done"' in done, done
    assert len(workspace.dataset("letters").items) == 4


def test_uploaded_csv_cannot_read_server_files(client_as, image_folder, workspace):
    client, csrf = client_as("trainer")
    folder = image_folder(per_label=2)
    outside = next(folder.rglob("*.png"))
    rows = f"{outside},cat\n../../{outside.name},cat\n"
    started = _upload(client, csrf, "sneaky", {"file": ("x.csv", rows.encode(), "text/csv")})
    done = wait_job(client, job_id_of(started.text))
    assert 'data-status="failed"' in done
    assert "path_not_allowed" in done or "outside" in done
    assert "console-upload-" not in done  # the temp folder's path is not shown
    assert workspace.dataset_names() == []


def test_viewer_and_reviewer_cannot_import_even_by_hand(client_as, class_zip, workspace):
    for role in ("viewer", "reviewer"):
        client, csrf = client_as(role)
        assert 'action="/datasets/import"' not in client.get("/datasets").text
        response = _upload(
            client, csrf, "pets", {"file": ("p.zip", class_zip(), "application/zip")}
        )
        assert response.status_code == 403 and "may not do this" in response.text
    assert workspace.dataset_names() == []


def test_import_without_csrf_is_refused(client_as, class_zip, workspace):
    client, _ = client_as("admin")
    response = client.post(
        "/datasets/import",
        data={"name": "pets"},
        files={"file": ("p.zip", class_zip(), "application/zip")},
    )
    assert response.status_code == 403
    assert workspace.dataset_names() == []


def test_server_path_import_is_for_admins(client_as, image_folder, workspace):
    folder = image_folder(per_label=3)
    trainer, csrf = client_as("trainer")
    refused = trainer.post(
        "/datasets/import-path",
        data={"name": "local", "path": str(folder)},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status_code == 403
    admin, csrf = client_as("admin")
    assert "/datasets/import-path" in admin.get("/datasets").text
    started = admin.post(
        "/datasets/import-path",
        data={"name": "local", "path": str(folder)},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert 'data-status="done"' in wait_job(admin, job_id_of(started.text))
    assert len(workspace.dataset("local").items) == 6
    missing = admin.post(
        "/datasets/import-path",
        data={"name": "local", "path": str(folder / "nope")},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert missing.status_code == 400 and "no such file or folder" in missing.text


def test_upload_too_large_is_413(make_app, workspace, class_zip):
    from autovision.console.auth import create_user

    from ._helpers import PASSWORD, login

    app = make_app(max_upload_mb=0.001)
    create_user(workspace, "ada", "admin", PASSWORD)
    client = TestClient(app, base_url=BASE)
    login(client, "ada")
    csrf = csrf_of(client.get("/datasets").text)
    response = _upload(client, csrf, "pets", {"file": ("p.zip", class_zip(), "application/zip")})
    assert response.status_code == 413 and "limit" in response.text
    assert workspace.dataset_names() == []
    assert not list((workspace.root / "tmp").glob("console-upload-*/*"))


def test_bad_uploads_say_why(client_as):
    client, csrf = client_as("trainer")
    wrong_type = _upload(client, csrf, "pets", {"file": ("notes.txt", b"hello", "text/plain")})
    assert wrong_type.status_code == 400 and "Upload a .zip" in wrong_type.text
    bad_name = _upload(client, csrf, "../etc", {"file": ("p.zip", b"PK", "application/zip")})
    assert bad_name.status_code == 400 and "invalid dataset name" in bad_name.text
    not_zip = _upload(client, csrf, "pets", {"file": ("p.zip", b"not a zip", "application/zip")})
    done = wait_job(client, job_id_of(not_zip.text))
    assert 'data-status="failed"' in done and "not a zip file" in done
    missing = client.post("/datasets/import", data={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 422


def test_user_text_is_escaped(client_as, class_zip):
    client, csrf = client_as("trainer")
    data = class_zip(labels=("cat", XSS), extra={f"{XSS}.txt": b"not an image"})
    started = _upload(client, csrf, "xss", {"file": (f"{XSS}.zip", data, "application/zip")})
    done = wait_job(client, job_id_of(started.text))
    assert 'data-status="done"' in done, done
    assert "&lt;img src=x onerror=alert(1)&gt;" in done  # the label and the problem's file
    assert "<img src=x" not in done
    page = client.get(f"/datasets?job={job_id_of(started.text)}").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_jobs_are_private_to_their_starter(client_as, class_zip):
    trainer, csrf = client_as("trainer")
    started = _upload(trainer, csrf, "pets", {"file": ("p.zip", class_zip(), "application/zip")})
    job = job_id_of(started.text)
    wait_job(trainer, job)
    viewer, _ = client_as("viewer")
    assert viewer.get(f"/datasets/imports/{job}").status_code == 404
    admin, _ = client_as("admin")
    assert admin.get(f"/datasets/imports/{job}").status_code == 200


def test_list_figures_are_cached_per_content_hash(client_as, image_folder, workspace):
    from autovision.console.summaries import SummaryCache, dataset_rows
    from autovision.data.importer import import_dataset

    import_dataset(workspace, "flowers", image_folder(per_label=4))
    rows = dataset_rows(workspace)
    assert [(r["name"], r["latest"], r["versions"], r["images"]) for r in rows] == [
        ("flowers", 1, 1, 8)
    ]
    client, _ = client_as("viewer")
    first = client.get("/datasets/table").text
    assert ">flowers<" in first
    cache = client.app.state.console.summaries
    cache._pool.shutdown(wait=True)  # let the background summary finish
    assert cache.cached(rows[0]["content_hash"])["labels"] == 2
    assert isinstance(cache, SummaryCache)
    second = client.get("/datasets/table").text
    assert "analysing" not in second and "every 2s" not in second


def test_a_running_import_shows_a_progress_bar_that_polls(client_as):
    from autovision.console.imports import ImportJob

    client, _ = client_as("trainer")
    job = ImportJob(id="job-1", dataset="pets", user="trainer-user", source="pets.zip")
    job.status, job.done, job.total = "importing", 30, 120
    client.app.state.console.imports._jobs[job.id] = job
    html = client.get("/datasets/imports/job-1").text
    assert '<progress max="100" value="25"' in html and "30 of 120 images" in html
    assert 'hx-get="/datasets/imports/job-1"' in html and "HX-Trigger" not in html
    job.status = "done"
    splits = {"train": 96, "validation": 12, "test": 12}
    job.result = {"dataset": "pets", "version": 1, "images": 120, "labels": 2,
                  "label_names": ["a", "b"], "splits": splits}  # fmt: skip
    done = client.get("/datasets/imports/job-1")
    assert "hx-get" not in done.text and done.headers["hx-trigger"] == "datasets-changed"
