"""``check_dataset``: the model-based checks of one dataset version, computed and stored.

Embeddings first (once, from the search's cache: see :mod:`.embeddings`), then content near
duplicates (their pairs keep copies inside one fold of the label check), label issues and
outliers; each result is stored with :func:`autovision.checks.store.save_check` as soon as it
is computed, so ``dataset show``, ``dataset exclude`` and ``train --exclude-issues`` see it.

``budget`` bounds the whole check, but only embedding is long (a forward pass per image;
the analyses after it take seconds): when the budget runs out while embedding, the check
stops with a :class:`CheckBudgetError` that says how far it got, and what was embedded stays
cached, so running it again goes on from there. Nothing is stored for a check cut short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from autovision.checks import label_issues as label_mod
from autovision.checks import near_duplicates as nd_mod
from autovision.checks import outliers as outliers_mod
from autovision.checks.embeddings import dataset_embeddings
from autovision.checks.store import save_check
from autovision.errors import DatasetError
from autovision.security.audit import audited

FLIPPED = False
"""Whether the near-duplicate check also compares each image with the others' mirror
images (``dataset_embeddings(flip=True)``: a second embedding pass, which doubles the cost
of a cold check, cached too). Off by default: globally pooled convolutional features are
close to mirror-invariant already, and a cold check should stay within ~2 minutes for
1,500 images on 2 cores; the benchmark measures what the pass adds."""

Progress = Callable[[str, int, int], None]  # (stage, done, total)
STAGES = ("embedding", "embedding_flipped", "near_duplicates", "label_issues", "outliers")


class CheckBudgetError(DatasetError):
    """The check's budget ran out while embedding (what was embedded stays cached)."""


def _seconds(budget: str | float | None) -> float | None:
    if budget is None:
        return None
    from autovision.search.budget import parse_duration

    return parse_duration(budget)


def _enrich(entries: list[dict[str, Any]], by_id: dict[int, Any]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        it = by_id.get(int(e["id"]))
        extra = {}
        if it is not None:
            label: Any = list(it.labels) if len(it.labels) != 1 else it.labels[0]
            extra = {"source": it.source, "split": it.split, "label": label or None}
        out.append({**e, **extra})
    return out


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    content = result.get("content_duplicates") or {}
    return {
        "version": result.get("version"),
        "label_issues": len(result.get("label_issues") or []),
        "label_issues_test": len(result.get("label_issues_test") or []),
        "outliers": len(result.get("outliers") or []),
        "content_pairs": len(content.get("pairs") or []),
        "embedded": (result.get("embedding") or {}).get("computed"),
    }


@audited(
    "dataset.check",
    args=("ref", "label_issues", "outliers", "near_duplicates", "folds", "budget"),
    result=_summary,
)
def check_dataset(
    ws: Any,
    ref: str,
    *,
    label_issues: bool = True,
    outliers: bool = True,
    near_duplicates: bool = True,
    folds: int = label_mod.FOLDS,
    budget: str | float | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    flipped: bool | None = None,
) -> dict[str, Any]:
    """Run the asked checks on ``ref`` (``NAME`` or ``NAME@N``), store each, return them all:
    ``{"dataset", "version", "seconds", "embedding": {"model", "image_size", "computed",
    "cached", "seconds"}, "label_issues", "label_issues_test", "outliers",
    "content_duplicates", "checks": {kind: result}}`` (a kind not asked: empty list / ``None``).

    ``budget``: ``"2m"`` or seconds (see the module docstring); ``progress(stage, done,
    total)`` follows the stages of :data:`STAGES`; ``flipped``: see :data:`FLIPPED`.
    """
    t0 = time.monotonic()
    if folds < 2:
        raise DatasetError(f"--folds must be at least 2, not {folds}")
    ds = ws.dataset(ref)
    limit = _seconds(budget)
    deadline = None if limit is None else t0 + limit
    flipped = FLIPPED if flipped is None else flipped

    def stage(name: str) -> Callable[[int, int], None]:
        return lambda done, total: progress(name, done, total) if progress else None

    def embed(flip: bool, name: str) -> Any:
        try:
            return dataset_embeddings(ws, ds, flip=flip, deadline=deadline, progress=stage(name))
        except TimeoutError:
            raise CheckBudgetError(
                f"{ds.ref}: the check ran past its budget of {limit:g}s while embedding "
                f"the {len(ds.items)} images ({'mirrored ' if flip else ''}embeddings computed "
                "so far stay cached): run it again to go on, or give a larger --budget"
            ) from None

    emb = embed(False, "embedding")
    by_id = {it.id: it for it in emb.items}
    params = {"folds": folds, "seed": seed, "embedding": emb.info()}
    out: dict[str, Any] = {
        "dataset": ds.name,
        "version": ds.version,
        "seconds": 0.0,
        "embedding": emb.info(),
        "label_issues": [],
        "label_issues_test": [],
        "outliers": [],
        "content_duplicates": None,
        "checks": {},
    }
    pairs: list = []
    if near_duplicates:
        emb_flipped = None
        if flipped:
            mirrored = embed(True, "embedding_flipped")
            emb_flipped = mirrored.emb
            out["embedding"]["flipped"] = mirrored.info()
        stage("near_duplicates")(0, 1)
        content = nd_mod.content_pairs(emb.emb, emb.ids, emb_flipped=emb_flipped)
        save_check(ws, ds, "content_duplicates", content, {**params, "flipped": flipped})
        out["content_duplicates"] = content
        out["checks"]["content_duplicates"] = content
        pairs = content.get("pairs") or []
        stage("near_duplicates")(1, 1)
    if label_issues:
        stage("label_issues")(0, 1)
        groups = label_mod.duplicate_groups_of(emb.items, pairs)
        found = label_mod.find_label_issues(
            ds, emb.items, emb.emb, folds=folds, seed=seed, groups=groups, model=emb.model
        )
        found["embedding"] = emb.info()
        save_check(ws, ds, "label_issues", found, params)
        out["label_issues"] = found["label_issues"]
        out["label_issues_test"] = found["label_issues_test"]
        out["checks"]["label_issues"] = found
        stage("label_issues")(1, 1)
    if outliers:
        stage("outliers")(0, 1)
        found = dict(outliers_mod.find_outliers(emb.emb, emb.ids))
        for key in ("outliers", "ranking"):
            found[key] = _enrich(found.get(key) or [], by_id)
        save_check(ws, ds, "outliers", found, params)
        out["outliers"] = found["outliers"]
        out["checks"]["outliers"] = found
        stage("outliers")(1, 1)
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out
