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
ISSUES = (*GROUP_ISSUES, "quality", *FLAGS)
_EDIT_KEYS = ("excluded", "relabeled")


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
    quality flags exclude the flagged images.
    """
    found = report.get("issues") or {}
    names = set(issues)
    drop: set[int] = set()

    # The report lists each group once (a conflicting exact group is not repeated under
    # exact_duplicates), so duplicates are found by each group's "duplicate" kind.
    kinds = {k for k, issue in _DUPLICATE_ISSUES.items() if issue in names}
    dup_groups = [
        list(g.get("images", []))
        for listed in GROUP_ISSUES
        for g in found.get(listed, [])
        if _duplicate_kind(listed, g) in kinds
    ]
    for members in _merge(dup_groups):
        keep = min(members, key=lambda m: (_split_rank(m.get("split")), m["id"]))
        drop.update(m["id"] for m in members if m["id"] != keep["id"])
    if "conflicting_labels" in names:
        for g in found.get("conflicting_labels", []):
            drop.update(m["id"] for m in g.get("images", []))
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
                drop.update(m["id"] for m in members if m.get("split") != keep_split)
    flags = set(FLAGS) if "quality" in names else names & set(FLAGS)
    quality = found.get("quality") or {}
    for flag in sorted(flags):
        drop.update(e["id"] for e in quality.get(flag, []))
    return drop


_DUPLICATE_ISSUES = {"exact": "exact_duplicates", "near": "near_duplicates"}


def _duplicate_kind(listed: str, group: dict[str, Any]) -> str | None:
    """``exact`` or ``near``: a group's ``duplicate`` (older reports: the list it is in)."""
    if "duplicate" in group:
        return group["duplicate"]
    return {"exact_duplicates": "exact", "near_duplicates": "near"}.get(listed)


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
    if issues is not None:
        names = parse_issues(issues)
        found = issue_exclusions(_report.dataset_report(ds), names)
        drop |= found
        what.append(f"issues {', '.join(names)} ({len(found)} images)")
    if not drop:
        return ds
    keep = [it for it in ds.items if it.id not in drop]
    if not keep:
        raise DatasetError(f"excluding {len(drop)} images would leave {ds.ref} empty")
    note = f"excluded {len(drop)} images from {ds.ref}: {'; '.join(what)}"
    return _new_version(ws, ds, keep, note, excluded=sorted(drop))


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
