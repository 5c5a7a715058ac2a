"""The deploy page: every named model with its versions, aliases and alias history;
promote a version to an alias and roll an alias back (admins: the library calls of
``autovision models alias set`` and ``models rollback``); and "try it": upload images and
see what the version an alias names answers, predicted in the console process."""

from __future__ import annotations

import base64
import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from autovision.console.auth import User, audit_as
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.console.tryit import tryit_state
from autovision.errors import AutovisionError, ModelError
from autovision.security.audit import audit_event
from autovision.versions import store
from autovision.versions.refs import parse_ref

router = APIRouter()
HISTORY_SHOWN = 50
SUGGESTED_ALIASES = ("production", "staging", "candidate")
BARS_SHOWN = 5  # labels with a confidence bar per image; the rest are listed in a details
PREVIEW_SIDE = 112


# ---- the page ------------------------------------------------------------------------


def _when(iso: str | None) -> str:
    return (iso or "")[:16].replace("T", " ")


def _score(metrics: dict[str, Any] | None, task: str) -> str:
    """Test accuracy (macro F1 for multi-label), as ``autovision models list`` shows it."""
    if not metrics:
        return "–"
    if task == "multi-label" and isinstance(metrics.get("macro_f1"), float):
        return f"{metrics['macro_f1']:.3f} F1"
    acc = metrics.get("accuracy")
    return f"{acc:.3f}" if isinstance(acc, float) else "–"


def _model_context(ws: Any, name: str, versions: list[Any]) -> dict[str, Any]:
    """One named model as its card shows it: aliases (where each points, since when, by
    whom, where a rollback would go), versions newest first, and the history newest first."""
    by_version = {v.version: v for v in versions}
    events = store.history(ws, name)
    last_move: dict[str, Any] = {}
    for e in events:
        if e.kind != "kept":
            last_move[e.alias] = e
    aliases = []
    for alias, version in store.aliases(ws, name).items():
        mv = by_version.get(version)
        moved = last_move.get(alias)
        aliases.append(
            {
                "alias": alias,
                "version": version,
                "score": _score(mv.test_metrics if mv else None, mv.task if mv else ""),
                "since": _when(moved.time) if moved else "",
                "by": moved.actor if moved else "",
                "rollback_to": store.rollback_target(ws, name, alias),
            }
        )
    rows = [
        {
            "version": v.version,
            "id": v.id,
            "aliases": list(v.aliases),
            "dataset": f"{v.dataset}@{v.dataset_version}",
            "task": v.task,
            "score": _score(v.test_metrics, v.task),
            "created": _when(v.created_at),
        }
        for v in reversed(versions)
    ]
    history = [
        {
            "time": _when(e.time),
            "alias": e.alias,
            "kind": e.kind,
            "from": e.from_version,
            "to": e.to_version,
            "actor": e.actor,
            "reason": e.reason or "",
            "from_score": _score(e.from_metrics, versions[0].task),
            "to_score": _score(e.to_metrics, versions[0].task),
        }
        for e in reversed(events)
    ]
    return {
        "name": name,
        "aliases": aliases,
        "versions": rows,
        "latest": versions[-1].version,
        "history": history[:HISTORY_SHOWN],
        "history_total": len(history),
        "seen": ";".join(f"{a['alias']}={a['version']}" for a in aliases),
        "suggested": [a for a in SUGGESTED_ALIASES if a not in {x["alias"] for x in aliases}],
    }


def _models(ws: Any, only: str | None = None) -> list[dict[str, Any]]:
    grouped: dict[str, list[Any]] = {}
    for mv in store.list_versions(ws, only):
        grouped.setdefault(mv.name, []).append(mv)
    return [_model_context(ws, name, vs) for name, vs in grouped.items()]


def _targets(models: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What "try it" can ask: every alias of every model, ``production`` first."""
    out = []
    for m in models:
        order = sorted(m["aliases"], key=lambda a: (a["alias"] != "production", a["alias"]))
        for a in order:
            ref = f"{m['name']}@{a['alias']}"
            out.append({"ref": ref, "text": f"{ref} (version {a['version']})"})
    return out


def _page(
    request: Request,
    *,
    flash: dict[str, Any] | None = None,
    status: int = 200,
    tryit: dict[str, Any] | None = None,
) -> Response:
    ws = console_state(request).ws
    models = _models(ws)
    limits = tryit_state(request.app).limits
    return render(
        request,
        "deploy.html",
        status_code=status,
        models=models,
        targets=_targets(models),
        flash=flash,
        limits=limits,
        upload_mb=_megabytes(limits.max_upload_bytes),
        chosen=(tryit or {}).get("ref"),
        tryit=tryit is not None,
        **(tryit or {}),
    )


@router.get("/deploy")
def deploy_page(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    return _page(request)


# ---- promote and roll back (admins) --------------------------------------------------


def _megabytes(n: int) -> str:
    """``10 MiB`` for the server's 10 * 1024 * 1024, ``2.5 MB`` otherwise."""
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n / 1e6:.3g} MB"


def _seen(text: str) -> dict[str, int]:
    """``default=1;production=2``: where the page showed each alias."""
    out = {}
    for part in (text or "").split(";"):
        alias, sep, version = part.partition("=")
        if sep and version.isdigit():
            out[alias.strip()] = int(version)
    return out


def _after_move(
    request: Request, name: str, ok: bool, message: str, moved: str | None = None
) -> Response:
    status = 200 if ok else 409
    flash = {"name": name, "ok": ok, "message": message}
    if not is_htmx(request):
        if ok:
            return RedirectResponse(f"/deploy#model-{name}", status_code=303)
        return _page(request, flash=flash, status=status)
    ws = console_state(request).ws
    try:
        (model,) = _models(ws, name)
    except (ModelError, ValueError):
        return render(request, "_error.html", status_code=404, title="Not found", message=message)
    targets = _targets(_models(ws)) if ok else None
    return render(
        request,
        "_deploy_moved.html",
        status_code=status,
        m=model,
        flash=flash,
        targets=targets,
        chosen=moved,
    )


def _moved(ev: Any) -> str:
    before = "no version" if ev.from_version is None else f"version {ev.from_version}"
    return f"{ev.name}@{ev.alias}: {before} → version {ev.to_version} ({ev.kind})."


@router.post("/deploy/promote")
def promote(
    request: Request,
    user: Annotated[User, Depends(require("deploy"))],
    name: Annotated[str, Form(max_length=100)],
    version: Annotated[int, Form(ge=1)],
    alias: Annotated[str, Form(max_length=63)],
    reason: Annotated[str, Form(max_length=500)] = "",
    seen: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """Point ``alias`` at ``NAME@version`` (``models alias set``); ``seen``: the aliases as
    the page showed them, so an alias moved by someone else since is refused, not lost."""
    ws = console_state(request).ws
    alias = alias.strip()
    shown = _seen(seen)
    expect = None if not seen else shown.get(alias, store.ABSENT)
    try:
        with audit_as(user):
            ev = store.set_alias(
                ws, name, version, alias, reason=reason.strip() or None, expect_version=expect
            )
    except ModelError as exc:
        return _after_move(request, name, False, str(exc))
    return _after_move(request, name, True, _moved(ev), f"{ev.name}@{ev.alias}")


@router.post("/deploy/rollback")
def rollback(
    request: Request,
    user: Annotated[User, Depends(require("deploy"))],
    name: Annotated[str, Form(max_length=100)],
    alias: Annotated[str, Form(max_length=63)],
    expect: Annotated[int | None, Form(ge=1)] = None,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Move ``alias`` back to the version it named before (``models rollback``); ``expect``:
    the version the page showed, so a second click does not step back twice."""
    ws = console_state(request).ws
    try:
        with audit_as(user):
            ev = store.rollback(
                ws, name, alias.strip(), reason=reason.strip() or None, expect_version=expect
            )
    except ModelError as exc:
        return _after_move(request, name, False, str(exc))
    return _after_move(request, name, True, _moved(ev), f"{ev.name}@{ev.alias}")


# ---- try it --------------------------------------------------------------------------


def _tryit_error(request: Request, message: str, status: int = 400) -> Response:
    if not is_htmx(request):
        return _error_page(request, status, message)
    return render(
        request, "_error.html", status_code=status, title="Cannot try this", message=message
    )


def _shown_name(upload: UploadFile, i: int) -> str:
    base = os.path.basename((upload.filename or "").replace("\\", "/"))[:200]
    return base or f"image {i + 1}"


class _UploadRefused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


async def _read_uploads(request: Request, limits: Any) -> list[tuple[str, bytes]]:
    """The uploaded images as ``(name, bytes)``; :class:`_UploadRefused` says why not."""
    mb = _megabytes(limits.max_upload_bytes)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limits.max_upload_bytes + 64 * 1024:
        raise _UploadRefused(
            f"The upload is over the limit of {mb} (as for the prediction server).", 413
        )
    try:
        form = await request.form(max_files=limits.max_files, max_fields=20)
    except StarletteHTTPException as exc:
        raise _UploadRefused(f"{exc.detail} (at most {limits.max_files} images at once).") from None
    uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    uploads = [f for f in uploads if f.filename or f.size]
    if not uploads:
        raise _UploadRefused("Choose one or more images to try.")
    if len(uploads) > limits.max_files:
        raise _UploadRefused(
            f"{len(uploads)} images: over the limit of {limits.max_files} at once.", 413
        )
    images, total = [], 0
    for i, upload in enumerate(uploads):
        data = await upload.read(limits.max_upload_bytes + 1)
        total += len(data)
        if total > limits.max_upload_bytes:
            raise _UploadRefused(
                f"{_shown_name(upload, i)}: the images are over the limit of {mb} together "
                "(as for the prediction server): send fewer at once.",
                413,
            )
        images.append((_shown_name(upload, i), data))
    return images


def _result_rows(results: list[Any], task: str) -> list[dict[str, Any]]:
    """Per image: the labels it gets (single-label: the top one; multi-label: those over
    their thresholds), the top confidences as bars, the rest as text, and a preview."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"name": r.name, "ok": r.ok}
        if not r.ok:
            row.update(reason=r.reason, message=r.message)
            rows.append(row)
            continue
        ranked = sorted(r.probabilities.items(), key=lambda kv: -kv[1])
        if task == "multi-label":
            decided = set(r.prediction["displayNames"])
        else:
            decided = {r.prediction["displayNames"][0]} if r.prediction["displayNames"] else set()
        row.update(
            size=f"{r.width}×{r.height}",
            top=ranked[0][0] if ranked else "",
            decided=[label for label, _ in ranked if label in decided],
            bars=[
                {"label": label, "p": p, "pct": f"{100 * p:.1f}", "decided": label in decided}
                for label, p in ranked[:BARS_SHOWN]
            ],
            rest=[{"label": label, "pct": f"{100 * p:.2f}"} for label, p in ranked[BARS_SHOWN:]],
            preview=(
                "data:image/jpeg;base64," + base64.b64encode(r.preview).decode()
                if r.preview
                else None
            ),
        )
        rows.append(row)
    return rows


@router.post("/deploy/try")
async def try_it(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    """Predict the uploaded images with the version ``model`` (``NAME@ALIAS``) names now;
    the answer says which version answered."""
    from autovision.predict.encoded import predict_encoded

    st = console_state(request)
    tryit = tryit_state(request.app)
    limits = tryit.limits
    try:
        images = await _read_uploads(request, limits)
    except _UploadRefused as exc:
        return _tryit_error(request, exc.message, exc.status)
    form = await request.form()
    ref = str(form.get("model") or "").strip()
    if not ref:
        return _tryit_error(request, "Choose the model to try.")
    try:
        mv = await run_in_threadpool(store.resolve, st.ws, ref)
        start = time.perf_counter()
        package = await run_in_threadpool(tryit.packages.get, st.ws, mv.id)
        results = await run_in_threadpool(
            lambda: predict_encoded(
                package,
                images,
                max_pixels=limits.max_pixels,
                max_image_bytes=limits.max_image_bytes,
                max_total_bytes=limits.max_total_bytes,
                preview=PREVIEW_SIDE,
            )
        )
        seconds = time.perf_counter() - start
    except AutovisionError as exc:
        return _tryit_error(request, f"{ref}: {exc}", 404 if "no model" in str(exc) else 400)
    failed = sum(1 for r in results if not r.ok)
    with audit_as(user):
        audit_event(
            st.ws,
            "console.try",
            "ok" if not failed else "partial",
            model=mv.id,
            ref=mv.ref,
            asked=ref,
            images=len(results),
            failed=failed,
        )
    answer = {
        "ref": ref,
        "mv": mv,
        "results": _result_rows(results, package.task),
        "failed": failed,
        "ms": f"{1000 * seconds:.0f}",
        "alias": _alias_of(ref),
    }
    if not is_htmx(request):
        return _page(request, tryit=answer)
    return render(request, "_deploy_results.html", **answer)


def _alias_of(ref: str) -> str | None:
    try:
        return parse_ref(ref).alias
    except ModelError:
        return None


def _error_page(request: Request, status: int, message: str) -> Response:
    return render(
        request, "error.html", status_code=status, title="Cannot try this", message=message
    )
