"""Edits that make a new dataset version: exclude images, relabel images.

Items keep their ids and splits; the new version names its parent and says what changed.
When an edit changes nothing, no version is made and the given version is returned.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from autovision.data import report as _report
from autovision.data.dataset import SPLITS, DatasetVersion, Item
from autovision.data.quality import FLAGS
from autovision.data.readers import check_label
from autovision.errors import DatasetError
from autovision.security.audit import audited

GROUP_ISSUES = ("exact_duplicates", "near_duplicates", "conflicting_labels", "split_leakage")
MODEL_ISSUES = ("label_issues", "label_issues_test", "outliers")
"""Issues found by ``autovision dataset check`` (stored per version), not by the report itself."""
ISSUES = (*GROUP_ISSUES, "quality", *FLAGS, *MODEL_ISSUES)
_EDIT_KEYS = ("excluded", "excluded_issues", "relabeled", "suggestions")
# issue -> (stored check kind, the `dataset check` flag that computes it)
_CHECK_OF = {
    "label_issues": ("label_issues", "--label-issues"),
    "label_issues_test": ("label_issues", "--label-issues"),
    "outliers": ("outliers", "--outliers"),
}


def _new_version(
    ws: Any, ds: DatasetVersion, items: Sequence[Item], note: str, **params: Any
) -> DatasetVersion:
    return ws.create_version(
        ds.name,
        items,
        multi_label=ds.multi_label,
        source=ds.source,
        note=note,
        parent_version=ds.version,
        params={**{k: v for k, v in ds.params.items() if k not in _EDIT_KEYS}, **params},
        problems=ds.problems,
    )


def _id_list(ids: Iterable[int], limit: int = 10) -> str:
    ids = sorted(ids)
    text = ", ".join(map(str, ids[:limit]))
    return text + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def parse_issues(issues: str | Iterable[str]) -> list[str]:
    """``"exact_duplicates,blurry"`` -> validated issue names."""
    names = issues.split(",") if isinstance(issues, str) else list(issues)
    out = [n.strip().removeprefix("quality.").removeprefix("quality:") for n in names]
    out = [n for n in out if n]
    unknown = [n for n in out if n not in ISSUES]
    if unknown or not out:
        given = ", ".join(unknown) or "(none given)"
        raise DatasetError(f"unknown issue {given}; one or more of {', '.join(ISSUES)}")
    return out


def issue_exclusions(report: dict[str, Any], issues: Iterable[str]) -> set[int]:
    """The ids that cleaning ``issues`` excludes, given a :func:`dataset_report`.

    Duplicate groups keep one member (train first, then the lowest id); conflicting labels
    exclude every member; split leakage keeps the members of one split (train first);
    quality flags, label issues and outliers exclude the flagged images.
    """
    return set().union(*issue_exclusions_by_issue(report, issues).values())


def issue_exclusions_by_issue(report: dict[str, Any], issues: Iterable[str]) -> dict[str, set[int]]:
    """:func:`issue_exclusions` per issue (an id two issues flag is under both), for lineage
    and for saying what training left out. Exact and near duplicate groups that share a
    member are cleaned as one group; a dropped member counts under each kind it is in."""
    found = report.get("issues") or {}
    names = list(dict.fromkeys(issues))
    out: dict[str, set[int]] = {n: set() for n in names}

    dup_kinds = [k for k in ("exact_duplicates", "near_duplicates") if k in names]
    in_kind: dict[str, set[int]] = {k: set() for k in dup_kinds}
    dup_groups: list[list[dict[str, Any]]] = []
    for kind in dup_kinds:
        tag = kind.removesuffix("_duplicates")  # groups say "duplicate": "exact" | "near"
        groups = list(found.get(kind, []))
        # Each finding is listed once: a duplicate group may show under conflicting labels
        # or split leakage instead, and still dedupes here.
        groups += [
            g
            for other in GROUP_ISSUES
            if other != kind
            for g in found.get(other, [])
            if g.get("duplicate") == tag
        ]
        for g in groups:
            members = list(g.get("images", []))
            dup_groups.append(members)
            in_kind[kind].update(m["id"] for m in members)
    for members in _merge(dup_groups):
        keep = min(members, key=lambda m: (_split_rank(m.get("split")), m["id"]))
        for m in members:
            if m["id"] != keep["id"]:
                for kind in dup_kinds:
                    if m["id"] in in_kind[kind]:
                        out[kind].add(m["id"])
    if "conflicting_labels" in names:
        for g in found.get("conflicting_labels", []):
            out["conflicting_labels"].update(m["id"] for m in g.get("images", []))
    if "split_leakage" in names:
        # a conflicting group that also straddles splits is listed once, with its "splits"
        leaks = [
            *found.get("split_leakage", []),
            *(g for g in found.get("conflicting_labels", []) if g.get("splits")),
        ]
        for g in leaks:
            members = g.get("images", [])
            if members:
                keep_split = min((m.get("split") for m in members), key=_split_rank)
                out["split_leakage"].update(
                    m["id"] for m in members if m.get("split") != keep_split
                )
    quality = found.get("quality") or {}
    for name in names:
        if name == "quality":
            out[name] = {e["id"] for flag in FLAGS for e in quality.get(flag, [])}
        elif name in FLAGS:
            out[name] = {e["id"] for e in quality.get(name, [])}
        elif name in MODEL_ISSUES:
            out[name] = {int(e["id"]) for e in found.get(name) or []}
    return out


def required_checks(ws: Any, ds: DatasetVersion, issues: Iterable[str]) -> dict[str, Any]:
    """``load_checks(ws, ds)``, or a :class:`DatasetError` naming the ``dataset check`` to
    run when a model-based issue among ``issues`` was never computed for ``ds``."""
    from autovision.checks.store import load_checks

    checks = load_checks(ws, ds)
    lacking = [n for n in dict.fromkeys(issues) if n in _CHECK_OF and _CHECK_OF[n][0] not in checks]
    if lacking:
        flags = " ".join(dict.fromkeys(_CHECK_OF[n][1] for n in lacking))
        raise DatasetError(
            f"{', '.join(lacking)} of {ds.ref} were never computed: "
            f"run `autovision dataset check {ds.ref} {flags}` first"
        )
    return checks


def report_with_checks(ds: DatasetVersion, checks: dict[str, Any]) -> dict[str, Any]:
    """The data report of ``ds`` with the stored model-based findings in ``issues``."""
    return _report.dataset_report(ds, checks=checks)


def _split_rank(split: Any) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _merge(groups: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Merge groups that share a member (exact and near groups overlap)."""
    merged: list[dict[int, dict[str, Any]]] = []
    for g in groups:
        members = {m["id"]: m for m in g}
        overlapping = [m for m in merged if m.keys() & members.keys()]
        for m in overlapping:
            members.update(m)
            merged.remove(m)
        merged.append(members)
    return [list(m.values()) for m in merged]


@audited("dataset.exclude", args=("ref", "issues"), result=lambda v: {"version": v.ref})
def exclude(
    ws: Any,
    ref: str,
    ids: Iterable[int] | None = None,
    issues: str | Iterable[str] | None = None,
) -> DatasetVersion:
    """A new version without the given ids and/or the images that ``issues`` flag."""
    ds = ws.dataset(ref)
    if ids is None and issues is None:
        raise DatasetError("exclude: give ids or issues")
    known = ds.by_id()
    drop: set[int] = set()
    what: list[str] = []
    if ids is not None:
        wanted = {int(i) for i in ids}
        unknown = wanted - known.keys()
        if unknown:
            raise DatasetError(f"{ds.ref} has no image with id {_id_list(unknown)}")
        drop |= wanted
        what.append(f"ids {_id_list(wanted)}")
    by_issue: dict[str, set[int]] = {}
    if issues is not None:
        names = parse_issues(issues)
        checks = required_checks(ws, ds, names)
        by_issue = issue_exclusions_by_issue(report_with_checks(ds, checks), names)
        found = set().union(*by_issue.values()) & known.keys()
        drop |= found
        what.append(f"issues {', '.join(names)} ({len(found)} images)")
    if not drop:
        return ds
    keep = [it for it in ds.items if it.id not in drop]
    if not keep:
        raise DatasetError(f"excluding {len(drop)} images would leave {ds.ref} empty")
    note = f"excluded {len(drop)} images from {ds.ref}: {'; '.join(what)}"
    params: dict[str, Any] = {"excluded": sorted(drop)}
    if issues is not None:
        params["excluded_issues"] = {n: sorted(by_issue[n] & known.keys()) for n in by_issue}
    return _new_version(ws, ds, keep, note, **params)


@audited("dataset.relabel", args=("ref", "csv_path"), result=lambda v: {"version": v.ref})
def relabel(ws: Any, ref: str, csv_path: str | os.PathLike[str]) -> DatasetVersion:
    """A new version with labels from ``id,label[,label...]`` rows (no label: unlabeled)."""
    ds = ws.dataset(ref)
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the relabel CSV: {exc}") from None
    known = ds.by_id()
    changes: dict[int, tuple[str, ...]] = {}
    rows = 0
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        rows += 1
        try:
            cells = next(csv.reader([raw.rstrip("\r")], strict=True))
        except csv.Error as exc:
            raise DatasetError(f"{path} line {line}: malformed CSV: {exc}") from None
        head = cells[0].strip()
        if rows == 1 and head.lower() in ("id", "item_id"):
            continue
        if not head.isdigit():
            raise DatasetError(f"{path} line {line}: {head!r} is not an image id")
        item_id = int(head)
        if item_id not in known:
            raise DatasetError(f"{path} line {line}: {ds.ref} has no image with id {item_id}")
        if item_id in changes:
            raise DatasetError(f"{path} line {line}: image {item_id} is listed twice")
        labels: list[str] = []
        for cell in cells[1:]:
            if cell == "":
                continue
            label, why = check_label(cell)
            if label is None:
                raise DatasetError(f"{path} line {line}: {why}")
            if label not in labels:
                labels.append(label)
        if len(labels) > 1 and not ds.multi_label:
            raise DatasetError(
                f"{path} line {line}: {len(labels)} labels but {ds.ref} is single-label"
            )
        changes[item_id] = tuple(sorted(labels))
    if rows == 0:
        raise DatasetError(f"{path}: the relabel CSV is empty (expected id,label rows)")
    changed = {i: labs for i, labs in changes.items() if known[i].labels != labs}
    if not changed:
        return ds
    items = [replace(it, labels=changed[it.id]) if it.id in changed else it for it in ds.items]
    note = f"relabeled {len(changed)} images of {ds.ref} from {path.name}: ids {_id_list(changed)}"
    return _new_version(ws, ds, items, note, relabeled=sorted(changed))


@audited(
    "dataset.relabel_suggestions",
    args=("ref", "min_score", "ids", "include_test"),
    result=lambda v: {"version": v.ref},
)
def relabel_suggestions(
    ws: Any,
    ref: str,
    *,
    min_score: float = 0.5,
    ids: Iterable[int] | None = None,
    include_test: bool = False,
) -> DatasetVersion:
    """A new version that takes the suggested labels of the stored label-issue check.

    Only suggestions whose ``suggested_score`` (the out-of-fold probability of the suggested
    label) is at least ``min_score`` are taken; test-split ones only with ``include_test``
    (the evaluation's labels change with them). ``ids`` limits it to those images (each must
    have a suggestion). Lineage: ``relabeled`` ids and ``suggestions`` (from, to, scores and
    when the check was computed).
    """
    if not 0.0 <= float(min_score) <= 1.0:
        raise DatasetError(f"min_score must be between 0 and 1, got {min_score}")
    ds = ws.dataset(ref)
    names = ["label_issues", *(["label_issues_test"] if include_test else [])]
    check = required_checks(ws, ds, names)["label_issues"]
    entries = [e for n in names for e in check.get(n) or []]
    known = ds.by_id()
    wanted: set[int] | None = None
    if ids is not None:
        wanted = {int(i) for i in ids}
        lacking = wanted - {int(e["id"]) for e in entries}
        if lacking:
            where = "train, validation or test" if include_test else "train or validation"
            raise DatasetError(
                f"{ds.ref} has no stored label suggestion ({where}) for id {_id_list(lacking)}"
            )
    changes: dict[int, tuple[str, ...]] = {}
    taken: list[dict[str, Any]] = []
    for e in entries:
        item_id = int(e["id"])
        item = known.get(item_id)
        suggested = e.get("suggested")
        if item is None or not suggested or (wanted is not None and item_id not in wanted):
            continue
        if float(e.get("suggested_score") or 0.0) < min_score or item_id in changes:
            continue
        new = tuple(sorted(suggested)) if isinstance(suggested, list) else (str(suggested),)
        if new == item.labels:
            continue
        changes[item_id] = new
        taken.append(
            {
                "id": item_id,
                "from": list(item.labels) if ds.multi_label else ",".join(item.labels),
                "to": list(new) if ds.multi_label else new[0],
                "score": e.get("score"),
                "suggested_score": e.get("suggested_score"),
                "check_computed_at": check.get("computed_at"),
            }
        )
    if not changes:
        return ds
    items = [replace(it, labels=changes[it.id]) if it.id in changes else it for it in ds.items]
    note = (
        f"relabeled {len(changes)} images of {ds.ref} from the label-issue suggestions "
        f"(suggested_score >= {min_score:g}): ids {_id_list(changes)}"
    )
    taken.sort(key=lambda t: t["id"])
    return _new_version(ws, ds, items, note, relabeled=sorted(changes), suggestions=taken)


@audited("dataset.set_labels", args=("ref", "labels"), result=lambda v: {"version": v.ref})
def set_labels(ws: Any, ref: str, labels: dict[int, str | Sequence[str] | None]) -> DatasetVersion:
    """A new version where each id of ``labels`` gets those labels (a label, a list of
    labels, or ``None``/``[]``: unlabeled); the console's "Change label". Like
    :func:`relabel` without the CSV: unknown ids, invalid labels and several labels on a
    single-label dataset are refused, naming the id; no change, no new version."""
    if not labels:
        raise DatasetError("set_labels: give at least one image id")
    ds = ws.dataset(ref)
    known = ds.by_id()
    unknown = {int(i) for i in labels} - known.keys()
    if unknown:
        raise DatasetError(f"{ds.ref} has no image with id {_id_list(unknown)}")
    changes: dict[int, tuple[str, ...]] = {}
    for raw_id, given in labels.items():
        item_id = int(raw_id)
        names = [given] if isinstance(given, str) else list(given or ())
        clean: list[str] = []
        for name in names:
            label, why = check_label(name)
            if label is None:
                raise DatasetError(f"image {item_id} of {ds.ref}: {why}")
            if label not in clean:
                clean.append(label)
        if len(clean) > 1 and not ds.multi_label:
            raise DatasetError(
                f"image {item_id} of {ds.ref}: {len(clean)} labels but the dataset is single-label"
            )
        changes[item_id] = tuple(sorted(clean))
    changed = {i: labs for i, labs in changes.items() if known[i].labels != labs}
    if not changed:
        return ds
    items = [replace(it, labels=changed[it.id]) if it.id in changed else it for it in ds.items]
    targets = sorted({", ".join(labs) or "(unlabeled)" for labs in changed.values()})
    note = (
        f"relabeled {len(changed)} images of {ds.ref} as {'; '.join(targets[:5])}"
        f"{' …' if len(targets) > 5 else ''}: ids {_id_list(changed)}"
    )
    return _new_version(ws, ds, items, note, relabeled=sorted(changed))
