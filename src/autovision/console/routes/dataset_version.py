"""The dataset version page: the class distribution per split, label warnings, the diff from
the parent version, the model-based checks ("Run checks"), and a gallery with filters and
infinite scroll whose selected images can be excluded or relabelled (a new version).

Everything a request reads comes from :mod:`autovision.data.gallery` (SQL over the items,
cached issue sets): a page never loads the version's items, so it stays fast at 50,000
images. Only the edits (:func:`autovision.data.edit.exclude`, :func:`~autovision.data.edit.
set_labels`) load the version, once, to write the new one.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from autovision.console import charts
from autovision.console.auth import User, audit_as
from autovision.console.checkjobs import of_app
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.data import gallery as G
from autovision.data.dataset import SPLITS
from autovision.data.report import MIN_IMAGES_PER_LABEL, RECOMMENDED_IMAGES_PER_LABEL
from autovision.errors import AutovisionError, DatasetError, ImageDecodeError

router = APIRouter()

PAGE_SIZE = 60
THUMB_SIZES = (256, 512)
DIFF_SHOWN = 24
IMBALANCE_WARN = 5.0
"""Largest / smallest label above which the page warns that the classes are imbalanced."""
MAX_EDIT_IDS = 5000
ISSUE_TITLES = {
    "exact_duplicates": "Exact duplicates",
    "near_duplicates": "Near duplicates",
    "conflicting_labels": "Conflicting labels",
    "split_leakage": "Leakage across splits",
    "quality": "Any quality flag",
    "label_issues": "Label issues (train/validation)",
    "label_issues_test": "Label issues (test)",
    "outliers": "Outliers",
}
IMMUTABLE = "private, max-age=31536000, immutable"
"""Thumbnails of a blob never change; private: they are only for logged-in users."""
PLACEHOLDER = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" '
    'fill="#f3f4f6"/><path d="M20 20l24 24M44 20L20 44" stroke="#b42318" stroke-width="3"/></svg>'
)

_diffs: dict[tuple[Any, ...], dict[str, Any]] = {}
"""Diffs shown, by version pair: versions never change (the creation time guards against a
dataset deleted and made again with the same numbers)."""
_diffs_lock = threading.Lock()

Reader = Annotated[User, Depends(require("read"))]
Editor = Annotated[User, Depends(require("dataset.edit"))]


def _ref(name: str, version: int) -> str:
    return f"{name}@{version}"


def _not_found(request: Request, message: str) -> Response:
    template = "_error.html" if is_htmx(request) else "error.html"
    return render(request, template, status_code=404, title="Not found", message=message)


def _filters(
    label: str | None, split: str | None, issue: str | None, filename: str | None
) -> dict[str, str]:
    given = {"label": label, "split": split, "issue": issue, "filename": filename}
    return {k: v for k, v in given.items() if v}


def _page_url(name: str, version: int, filters: dict[str, str], **extra: Any) -> str:
    query = urlencode({**filters, **{k: v for k, v in extra.items() if v is not None}})
    return f"/datasets/{name}/{version}" + (f"?{query}" if query else "")


def _gallery(ws: Any, name: str, version: int, filters: dict[str, str], after: str | None):
    """The gallery context: a page of tiles, or the reason a filter is invalid."""
    try:
        page = G.gallery_page(ws, _ref(name, version), after=after, limit=PAGE_SIZE, **filters)
    except DatasetError as exc:
        return {"items": [], "next": None, "total": 0, "error": str(exc)}
    base = f"/datasets/{name}/{version}/gallery"
    page["next_url"] = (
        f"{base}?{urlencode({**filters, 'after': page['next']})}" if page["next"] else None
    )
    page["more_url"] = (
        _page_url(name, version, filters, after=page["next"]) if page["next"] else None
    )
    return page


def _issue_options(request: Request, ref: str) -> dict[str, Any]:
    """The issue filter's options with their counts once the version's issues are known."""
    _, warmer = of_app(request.app)
    if not warmer.ready(ref):
        return {"issues_ready": False, "issue_options": [], "issues_error": None}
    error = warmer.error(ref)
    if error is not None:
        return {"issues_ready": True, "issue_options": [], "issues_error": error}
    index = G.issue_index(console_state(request).ws, ref)
    ids = index["ids"]
    options = []
    for key in G.ISSUES:
        if key in G.CHECK_ISSUES and key not in index["checks_computed"]:
            continue
        n = len(ids.get(key) or [])
        title = ISSUE_TITLES.get(key) or f"Quality: {key.replace('_', ' ')}"
        if n or key in ISSUE_TITLES:
            options.append({"value": key, "title": title, "count": n})
    return {"issues_ready": True, "issue_options": options, "issues_error": None}


def _without_train(dist: dict[str, Any]) -> list[str]:
    """Labels with images but none in the train split: training refuses them (a duplicate
    group is split as one unit, so look-alikes can all land in validation or test)."""
    counts = dist["label_split_counts"]
    return [lab for lab in dist["labels"] if not counts[lab].get("train")]


def _chart(dist: dict[str, Any]) -> Any:
    splits = [s for s, n in dist["splits"].items() if n]
    rows = [(lab, dist["label_split_counts"][lab]) for lab in dist["labels"]]
    rows.sort(key=lambda r: (-sum(r[1].values()), r[0]))
    errors = {w["label"]: "#b42318" for w in dist["label_warnings"] if w["level"] == "error"}
    errors.update(dict.fromkeys(_without_train(dist), "#b42318"))
    return charts.bar_chart(
        rows,
        splits,
        colors=charts.SPLIT_COLORS,
        title="Images per label and split",
        unit="images",
        highlight=errors,
    )


def _diff(ws: Any, name: str, info: dict[str, Any]) -> dict[str, Any] | None:
    parent = info["parent_version"]
    if parent is None or parent not in info["versions"]:
        return None
    key = (str(ws.root), name, parent, info["version"], info["created_at"])
    d = _diffs.get(key)
    if d is None:
        d = G.version_diff(ws, name, parent, info["version"])
        with _diffs_lock:
            _diffs[key] = d
            while len(_diffs) > 64:
                _diffs.pop(next(iter(_diffs)))
    d = dict(d)
    d["counts"] = {k: len(d[k]) for k in ("added", "removed", "relabeled", "moved_split")}
    d["shown"] = DIFF_SHOWN
    return d


@router.get("/datasets/{name}/{version}")
def version_page(
    request: Request,
    name: str,
    version: int,
    user: Reader,
    label: str | None = None,
    split: str | None = None,
    issue: str | None = None,
    filename: Annotated[str | None, Query(max_length=200)] = None,
    after: str | None = None,
    unchanged: bool = False,
) -> Response:
    ws = console_state(request).ws
    ref = _ref(name, version)
    try:
        info = G.version_info(ws, ref)
    except DatasetError as exc:
        return _not_found(request, str(exc))
    dist = G.distribution(ws, ref)
    filters = _filters(label, split, issue, filename)
    jobs, _ = of_app(request.app)
    return render(
        request,
        "dataset_version.html",
        title=ref,
        info=info,
        dist=dist,
        chart=_chart(dist),
        imbalanced=(dist["imbalance_ratio"] or 0) >= IMBALANCE_WARN,
        without_train=_without_train(dist),
        diff=_diff(ws, name, info),
        filters=filters,
        page=_gallery(ws, name, version, filters, after),
        after=after,
        splits=[s for s in dict.fromkeys((*SPLITS, *dist["splits"])) if s in dist["splits"]],
        check_job=jobs.latest(name, version),
        issue_titles=ISSUE_TITLES,
        unchanged=unchanged,
        min_images=MIN_IMAGES_PER_LABEL,
        recommended_images=RECOMMENDED_IMAGES_PER_LABEL,
        **_issue_options(request, ref),
    )


@router.get("/datasets/{name}/{version}/gallery")
def gallery_fragment(
    request: Request,
    name: str,
    version: int,
    user: Reader,
    label: str | None = None,
    split: str | None = None,
    issue: str | None = None,
    filename: Annotated[str | None, Query(max_length=200)] = None,
    after: str | None = None,
) -> Response:
    """The next tiles (``after``: appended by infinite scroll) or the whole gallery for new
    filters (the page's URL follows them)."""
    ws = console_state(request).ws
    filters = _filters(label, split, issue, filename)
    page = _gallery(ws, name, version, filters, after)
    ctx = {"info": {"dataset": name, "version": version}, "page": page, "filters": filters}
    if after:
        return render(request, "_tiles.html", **ctx)
    response = render(request, "_gallery.html", **ctx)
    response.headers["HX-Push-Url"] = _page_url(name, version, filters)
    return response


@router.get("/datasets/{name}/{version}/issues")
def issue_filter(
    request: Request, name: str, version: int, user: Reader, issue: str = ""
) -> Response:
    """The issue filter, polled until the version's issues are computed."""
    return render(
        request,
        "_issue_filter.html",
        info={"dataset": name, "version": version},
        filters={"issue": issue} if issue else {},
        issue_titles=ISSUE_TITLES,
        **_issue_options(request, _ref(name, version)),
    )


@router.get("/datasets/{name}/{version}/items/{item_id}")
def item_panel(request: Request, name: str, version: int, item_id: int, user: Reader) -> Response:
    ref = _ref(name, version)
    _, warmer = of_app(request.app)
    try:
        # While the issue index is computed in the background, the fields only: never wait.
        item = G.item_detail(console_state(request).ws, ref, item_id, issues=warmer.ready(ref))
    except DatasetError as exc:
        return _not_found(request, str(exc))
    return render(request, "_item_detail.html", item=item, issue_titles=ISSUE_TITLES)


@router.get("/thumbs/{name}/{version}/{item_id}")
def thumb(
    request: Request, name: str, version: int, item_id: int, user: Reader, size: int = 256
) -> Response:
    """An item's thumbnail by opaque ids; the ETag is the blob's hash (and the size), so a
    browser that has it gets a 304 before any thumbnail is read."""
    if size not in THUMB_SIZES:
        return Response(f"size must be one of {THUMB_SIZES}", status_code=400)
    ws = console_state(request).ws
    ref = _ref(name, version)
    try:
        sha = G.item_sha256(ws, ref, item_id)
    except DatasetError as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    etag = f'"{sha}-{size}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    sent = request.headers.get("if-none-match", "")
    if etag in {t.strip() for t in sent.split(",")} or sent.strip() == "*":
        return Response(status_code=304, headers=headers)
    from autovision.data.thumbnails import MEDIA_TYPE, thumbnail

    try:
        data = thumbnail(ws, sha, size, what=f"item {item_id} of {ref}")
    except (ImageDecodeError, DatasetError):
        return Response(
            PLACEHOLDER, media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
        )
    return Response(data, media_type=MEDIA_TYPE, headers=headers)


# ---- edits: a new version -------------------------------------------------------------------


def _ids(ids: list[str]) -> list[int]:
    out = sorted({int(i) for i in ids if i.strip().isdigit()})
    if not out:
        raise DatasetError("select at least one image first")
    if len(out) > MAX_EDIT_IDS:
        raise DatasetError(f"{len(out)} images selected: at most {MAX_EDIT_IDS} at a time")
    return out


def _edited(request: Request, name: str, version: int, new: Any) -> Response:
    target = f"/datasets/{name}/{new.version}"
    if new.version == version:
        target += "?unchanged=1"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _edit_error(request: Request, message: str) -> Response:
    template = "_error.html" if is_htmx(request) else "error.html"
    return render(
        request, template, status_code=400, title="Cannot change the dataset", message=message
    )


@router.post("/datasets/{name}/{version}/exclude")
def exclude_images(
    request: Request,
    name: str,
    version: int,
    user: Editor,
    ids: Annotated[list[str], Form()],
) -> Response:
    from autovision.data.edit import exclude

    try:
        chosen = _ids(ids)
        with audit_as(user):
            new = exclude(console_state(request).ws, _ref(name, version), ids=chosen)
    except AutovisionError as exc:
        return _edit_error(request, str(exc))
    return _edited(request, name, version, new)


@router.post("/datasets/{name}/{version}/relabel")
def relabel_images(
    request: Request,
    name: str,
    version: int,
    user: Editor,
    ids: Annotated[list[str], Form()],
    label: Annotated[str, Form(max_length=1000)],
) -> Response:
    """Give the selected images ``label`` (multi-label datasets: comma-separated labels;
    empty: unlabeled)."""
    from autovision.data.edit import set_labels

    ws = console_state(request).ws
    try:
        chosen = _ids(ids)
        multi = G.version_info(ws, _ref(name, version))["multi_label"]
        given = [p.strip() for p in label.split(",")] if multi else [label.strip()]
        labels = [p for p in given if p]
        if not labels and not multi:
            raise DatasetError("name the new label")
        with audit_as(user):
            new = set_labels(ws, _ref(name, version), dict.fromkeys(chosen, labels))
    except AutovisionError as exc:
        return _edit_error(request, str(exc))
    return _edited(request, name, version, new)


# ---- model-based checks ---------------------------------------------------------------------


def _checks_context(request: Request, name: str, version: int) -> dict[str, Any]:
    jobs, _ = of_app(request.app)
    info = G.version_info(console_state(request).ws, _ref(name, version))
    return {"info": info, "check_job": jobs.latest(name, version)}


@router.post("/datasets/{name}/{version}/checks")
def run_checks(request: Request, name: str, version: int, user: Editor) -> Response:
    jobs, _ = of_app(request.app)
    try:
        G.version_info(console_state(request).ws, _ref(name, version))
    except DatasetError as exc:
        return _not_found(request, str(exc))
    jobs.start(user, name, version)
    if not is_htmx(request):
        return RedirectResponse(f"/datasets/{name}/{version}#checks", status_code=303)
    return render(request, "_checks.html", **_checks_context(request, name, version))


@router.get("/datasets/{name}/{version}/checks")
def checks_status(request: Request, name: str, version: int, user: Reader) -> Response:
    try:
        ctx = _checks_context(request, name, version)
    except DatasetError as exc:
        return _not_found(request, str(exc))
    response = render(request, "_checks.html", **ctx)
    job = ctx["check_job"]
    if job is not None and job.status == "done":
        response.headers["HX-Trigger"] = "checks-done"
    return response
