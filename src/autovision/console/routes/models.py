"""The model pages: the named models and their versions, one version's evaluation (the
figures of the HTML report, a confusion matrix whose cells open their test images, a
threshold slider computed in the browser) and two versions side by side. Read-only: every
route needs ``read``; the evaluation is computed once and cached by
:func:`autovision.evaluation.stored.stored_evaluation`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from autovision.console import charts_eval
from autovision.console.auth import User
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.errors import AutovisionError

router = APIRouter()
CELL_LIMIT = 200  # images shown of one confusion-matrix cell
HEAT_LEVELS = 6
START_THRESHOLD = {"single-label": 0.0, "multi-label": 0.5}


def _version(request: Request, name: str, version: int) -> Any:
    from autovision.versions import resolve

    try:
        return resolve(console_state(request).ws, f"{name}@{version}")
    except AutovisionError as exc:
        raise HTTPException(404, str(exc)) from None


def _evaluation(request: Request, mv: Any) -> tuple[dict[str, Any] | None, str | None]:
    from autovision.evaluation.stored import stored_evaluation

    try:
        return stored_evaluation(console_state(request).ws, mv.id), None
    except AutovisionError as exc:
        return None, str(exc)


@router.get("/models")
def models_page(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    from autovision.versions import list_versions

    groups: dict[str, list[Any]] = {}
    for mv in list_versions(console_state(request).ws):
        groups.setdefault(mv.name, []).append(mv)
    models = [
        {"name": name, "versions": list(reversed(vs)), "latest": vs[-1]}
        for name, vs in sorted(groups.items())
    ]
    return render(request, "models.html", models=models)


@router.get("/models/{name}/compare")
def compare_page(
    request: Request,
    name: str,
    user: Annotated[User, Depends(require("read"))],
    a: Annotated[int, Query()],
    b: Annotated[int, Query()],
) -> Response:
    from autovision.evaluation.stored import compare_versions

    mva, mvb = _version(request, name, a), _version(request, name, b)
    try:
        cmp = compare_versions(console_state(request).ws, mva.id, mvb.id)
        error = None
    except AutovisionError as exc:
        cmp, error = None, str(exc)
    rows = []
    if cmp is not None:
        ma, mb = cmp["a"]["metrics"], cmp["b"]["metrics"]
        for key, label, higher_better in COMPARE_ROWS:
            va, vb = ma.get(key), mb.get(key)
            delta = cmp["difference"].get(key)
            good = None if not delta else (delta > 0) == higher_better
            rows.append({"label": label, "a": va, "b": vb, "delta": delta, "good": good})
    from autovision.versions import list_versions

    return render(
        request,
        "model_compare.html",
        name=name,
        a=mva,
        b=mvb,
        cmp=cmp,
        rows=rows,
        error=error,
        versions=list_versions(console_state(request).ws, name),
    )


COMPARE_ROWS = [
    ("accuracy", "Accuracy", True),
    ("macro_f1", "Macro F1", True),
    ("micro_f1", "Micro F1", True),
    ("macro_precision", "Macro precision", True),
    ("macro_recall", "Macro recall", True),
    ("top_k_accuracy", "Top-k accuracy", True),
    ("log_loss", "Log loss", False),
    ("ece", "Calibration error (ECE)", False),
]


def _cards(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """The report's summary cards (evaluation/report.py's ``_summary``)."""
    multi = m["task"] == "multi-label"
    cards = [
        ("Subset accuracy" if multi else "Accuracy", m["accuracy"]),
        (f"Top-{m['top_k']} accuracy", m["top_k_accuracy"]) if m["top_k"] else None,
        ("Hamming loss", m.get("hamming_loss")) if multi else None,
        ("Macro F1", m["macro"]["f1"]),
        ("Micro F1", m["micro"]["f1"]),
        ("Macro precision", m["macro"]["precision"]),
        ("Macro recall", m["macro"]["recall"]),
        ("Log loss", m["log_loss"]),
        ("ROC AUC (macro)", m["roc_auc"]["macro"]),
        ("Average precision (macro)", m["average_precision"]["macro"]),
        ("Calibration error (ECE)", m["calibration"]["ece"]),
        ("Test images", m["images"]),
    ]
    return [c for c in cards if c is not None]


def _confusion(m: dict[str, Any]) -> list[dict[str, Any]]:
    labels, matrix = m["confusion_matrix"]["labels"], m["confusion_matrix"]["matrix"]
    rows = []
    for i, (lab, counts) in enumerate(zip(labels, matrix, strict=True)):
        total = m["per_label"][lab]["support"] or 1
        cells = []
        for j, n in enumerate(counts):
            share = n / total
            level = 0 if n == 0 else min(HEAT_LEVELS - 1, 1 + int(share * (HEAT_LEVELS - 1)))
            cells.append(
                {
                    "n": n,
                    "pred": labels[j],
                    "share": share,
                    "cls": f"cm-{'d' if i == j else 'e'}{level}",
                }
            )
        rows.append({"label": lab, "cells": cells})
    return rows


@router.get("/models/{name}/{version}")
def version_page(
    request: Request, name: str, version: int, user: Annotated[User, Depends(require("read"))]
) -> Response:
    from autovision.evaluation.confidence import metrics_at
    from autovision.evaluation.stored import matrices, slider_data
    from autovision.versions import list_versions

    mv = _version(request, name, version)
    ev, error = _evaluation(request, mv)
    others = [v for v in list_versions(console_state(request).ws, name) if v.version != version]
    context: dict[str, Any] = {"mv": mv, "ev": ev, "error": error, "others": others}
    if ev is not None:
        m = ev["metrics"]
        start = START_THRESHOLD[m["task"]]
        Y, P = matrices(ev)
        sources = _sources(request, ev)
        pr_svg, pr_legend = charts_eval.pr_chart(ev["curves"])
        th_svg, th_legend = charts_eval.threshold_chart(m["confidence_thresholds"], start)
        context |= {
            "m": m,
            "cards": _cards(m),
            "confusion": _confusion(m),
            "slider": slider_data(ev),
            "start": start,
            "at_start": metrics_at(Y, P, m["task"], start),
            "pr_svg": pr_svg,
            "pr_legend": pr_legend,
            "th_svg": th_svg,
            "th_legend": th_legend,
            "cal_svg": charts_eval.calibration_chart(m["calibration"]),
            "sources": sources,
            "base": f"/models/{name}/{version}",
        }
    return render(request, "model_version.html", **context)


def _sources(request: Request, ev: dict[str, Any]) -> dict[int, str]:
    from autovision.evaluation.stored import item_sources

    return item_sources(console_state(request).ws, ev)


@router.get("/models/{name}/{version}/card")
def card_page(
    request: Request,
    name: str,
    version: int,
    user: Annotated[User, Depends(require("read"))],
    fmt: Annotated[str, Query(alias="format", pattern="^(html|md)$")] = "html",
) -> Response:
    """The version's model card, generated from the records now (Markdown with
    ``?format=md``); the page's styles come from :func:`card_css` (no inline styles)."""
    from autovision.cards import build_card, render_card

    mv = _version(request, name, version)
    try:
        card = build_card(console_state(request).ws, mv.id)
    except AutovisionError as exc:
        raise HTTPException(404, str(exc)) from None
    if fmt == "md":
        return Response(render_card(card, "md"), media_type="text/markdown; charset=utf-8")
    css = f"/models/{name}/{version}/card.css"
    html = render_card(card, "html", stylesheet=css, back=f"/models/{name}/{version}")
    return Response(html, media_type="text/html")


@router.get("/models/{name}/{version}/card.css")
def card_css(
    request: Request, name: str, version: int, user: Annotated[User, Depends(require("read"))]
) -> Response:
    from autovision.cards.render import css

    return Response(css(), media_type="text/css", headers={"cache-control": "private, max-age=300"})


@router.get("/models/{name}/{version}/cell")
def cell_page(
    request: Request,
    name: str,
    version: int,
    user: Annotated[User, Depends(require("read"))],
    true: Annotated[str, Query(max_length=500)],
    pred: Annotated[str, Query(max_length=500)],
) -> Response:
    """The test images of one confusion-matrix cell (a fragment for htmx, else a page)."""
    from autovision.evaluation.stored import cell_ids

    mv = _version(request, name, version)
    ev, error = _evaluation(request, mv)
    if ev is None:
        raise HTTPException(404, error or "no evaluation")
    try:
        ids = cell_ids(ev, true, pred)
    except AutovisionError as exc:
        raise HTTPException(404, str(exc)) from None
    labels = ev["metrics"]["labels"]
    j = labels.index(pred)
    probs = {i: row for i, row in zip(ev["ids"], ev["probs"], strict=True)}
    items = [
        {"id": i, "conf": probs[i][j], "true_p": probs[i][labels.index(true)]}
        for i in ids[:CELL_LIMIT]
    ]
    context = {
        "mv": mv,
        "true_label": true,
        "pred_label": pred,
        "items": items,
        "total": len(ids),
        "limit": CELL_LIMIT,
        "task": ev["metrics"]["task"],
        "sources": _sources(request, ev),
        "base": f"/models/{name}/{version}",
    }
    template = "_model_cell.html" if is_htmx(request) else "model_cell.html"
    return render(request, template, **context)


@router.get("/models/{name}/{version}/image/{item_id}")
def image(
    request: Request,
    name: str,
    version: int,
    item_id: int,
    user: Annotated[User, Depends(require("read"))],
) -> Response:
    """A thumbnail of one evaluated test image, by its item id (never a path)."""
    from autovision.data.gallery import item_thumbnail
    from autovision.data.thumbnails import MEDIA_TYPE

    mv = _version(request, name, version)
    ev, error = _evaluation(request, mv)
    if ev is None or item_id not in set(ev["ids"]):
        raise HTTPException(404, f"{mv.ref} was not evaluated on an image with id {item_id}")
    try:
        data = item_thumbnail(console_state(request).ws, ev["dataset"], item_id)
    except AutovisionError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(
        data,
        media_type=MEDIA_TYPE,
        headers={"cache-control": "private, max-age=31536000, immutable"},
    )
