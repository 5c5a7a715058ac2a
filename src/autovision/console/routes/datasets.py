"""The datasets page: the list, and imports by upload (trainers, admins) or by a path on the
server (admins only), each followed by a progress bar (htmx polling of the import job)."""

from __future__ import annotations

import os
import re
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from autovision.console.auth import User
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.console.imports import (
    ARCHIVE_SUFFIXES,
    INDEX_SUFFIXES,
    PROBLEMS_SHOWN,
    upload_suffix,
)
from autovision.console.summaries import dataset_rows
from autovision.data.importer import check_name
from autovision.errors import DatasetError

router = APIRouter()
CHUNK = 1024 * 1024


def _table_context(request: Request) -> dict[str, Any]:
    st = console_state(request)
    rows = dataset_rows(st.ws)
    for row in rows:
        row["summary"] = st.summaries.get(row["name"], row["latest"], row["content_hash"])
    return {"datasets": rows, "computing": any(r["summary"] is None for r in rows)}


@router.get("/datasets")
def datasets_page(
    request: Request, user: Annotated[User, Depends(require("read"))], job: str | None = None
) -> Response:
    found = console_state(request).imports.get(job, user) if job else None
    return render(
        request,
        "datasets.html",
        job=found,
        problems_shown=PROBLEMS_SHOWN,
        **_table_context(request),
    )


@router.get("/datasets/table")
def datasets_table(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    return render(request, "_datasets_table.html", **_table_context(request))


def _started(request: Request, job: Any) -> Response:
    if is_htmx(request):
        return render(request, "_import_job.html", job=job, problems_shown=PROBLEMS_SHOWN)
    return RedirectResponse(f"/datasets?job={job.id}", status_code=303)


def _form_error(request: Request, message: str, status: int = 400) -> Response:
    return render(
        request, "_error.html", status_code=status, title="Cannot import", message=message
    )


def _safe_name(filename: str | None, suffix: str) -> str:
    """The uploaded file's base name made harmless (problems name the file as the user
    knows it); never a path."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename or ""))[:100]
    return base if base.lower().endswith(suffix) and not base.startswith(".") else f"upload{suffix}"


async def _save(upload: UploadFile, path: str) -> int:
    size = 0
    with open(path, "wb") as out:
        while chunk := await upload.read(CHUNK):
            out.write(chunk)
            size += len(chunk)
    return size


@router.post("/datasets/import")
async def import_upload(
    request: Request,
    user: Annotated[User, Depends(require("dataset.import"))],
    name: Annotated[str, Form(max_length=100)],
    file: Annotated[UploadFile, File()],
    images: Annotated[UploadFile | None, File()] = None,
    split: Annotated[str, Form(max_length=40)] = "80/10/10",
) -> Response:
    """``file``: a zip/tar of class folders (or of a CSV/JSONL with its images), or a
    CSV/JSONL whose images come as the archive ``images``."""
    st = console_state(request)
    try:
        check_name(name.strip())
    except DatasetError as exc:
        return _form_error(request, str(exc))
    name = name.strip()
    archive_suffix = upload_suffix(file.filename, ARCHIVE_SUFFIXES)
    index_suffix = upload_suffix(file.filename, INDEX_SUFFIXES)
    has_images = images is not None and bool(images.filename)
    if archive_suffix is None and index_suffix is None:
        return _form_error(
            request,
            "Upload a .zip or .tar(.gz) of class folders, or a .csv / .jsonl file "
            "(with a zip of its images).",
        )
    images_suffix = upload_suffix(images.filename, ARCHIVE_SUFFIXES) if has_images else None
    if has_images and (index_suffix is None or images_suffix is None):
        return _form_error(
            request, "The images archive goes with a .csv or .jsonl file, as a .zip or .tar."
        )
    folder = st.imports.upload_dir()
    try:
        if archive_suffix is not None:
            source = str(folder / f"upload{archive_suffix}")
            await _save(file, source)
            images_path = None
        else:
            data = folder / "data"
            data.mkdir()
            source = str(data / _safe_name(file.filename, index_suffix))
            await _save(file, source)
            images_path = None
            if has_images:
                assert images is not None
                images_path = str(folder / f"images{images_suffix}")
                await _save(images, images_path)
        job = st.imports.start(
            user,
            name,
            source,
            shown=os.path.basename(file.filename or "upload"),
            cleanup=folder,
            images_archive=images_path,
            split=split,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _started(request, job)


@router.post("/datasets/import-path")
def import_server_path(
    request: Request,
    user: Annotated[User, Depends(require("dataset.import_server_path"))],
    name: Annotated[str, Form(max_length=100)],
    path: Annotated[str, Form(max_length=4096)],
    split: Annotated[str, Form(max_length=40)] = "80/10/10",
) -> Response:
    """An admin names a folder, CSV/JSONL or archive on the server (as the CLI takes it)."""
    st = console_state(request)
    name, path = name.strip(), path.strip()
    try:
        check_name(name)
    except DatasetError as exc:
        return _form_error(request, str(exc))
    if not path or not os.path.exists(os.path.expanduser(path)):
        return _form_error(request, f"{path or '(empty)'}: no such file or folder on the server")
    job = st.imports.start(user, name, os.path.expanduser(path), shown=path, split=split)
    return _started(request, job)


@router.get("/datasets/imports/{job_id}")
def import_status(
    request: Request, job_id: str, user: Annotated[User, Depends(require("read"))]
) -> Response:
    job = console_state(request).imports.get(job_id, user)
    if job is None:
        return _form_error(request, "No such import (the console may have restarted).", 404)
    response = render(request, "_import_job.html", job=job, problems_shown=PROBLEMS_SHOWN)
    if job.status == "done":
        response.headers["HX-Trigger"] = "datasets-changed"
    return response
