"""The data report of a dataset version.

``dataset_report(ds) -> dict`` with keys:
``dataset``, ``version``, ``images``, ``labels`` ({label: count}), ``splits``
({"train": n, "validation": n, "test": n}), ``multi_label``, ``label_split_counts``
({label: {split: n}}), ``imbalance_ratio`` (largest / smallest label, or null),
``label_warnings`` ([{"label", "count", "level": "error"|"warning", "message"}]),
``issues``: {
  ``exact_duplicates``, ``conflicting_labels``, ``near_duplicates``, ``split_leakage``:
      lists of groups ``{"images": [{"id", "source", "labels", "split"}, ...]}``
      (``conflicting_labels`` and ``split_leakage`` groups also have ``"kind":
      "exact"|"near"`` and the differing ``"labels"`` or ``"splits"``),
  ``quality``: {flag: [{"id", "source", "value"}]}},
``summary`` (counts per issue kind, label warnings per level, and ``notes`` for quality
flags so common that they describe the dataset rather than single images),
``problems`` (the import problems stored with the version).

Conflicting labels: exact-duplicate groups whose labeled members carry different labels
(label sets, for multi-label; ``"labels"`` lists them), and, of kind ``near``, images that
directly match a different file with other labels (connected through such pairs only: a
long chain of near-duplicates, common among small similar images such as digits, is not
a conflict because its two ends differ). Split leakage: exact groups whose labeled members
sit in more than one split, and images that directly match a different file in another
split, joined the same way. Unlabeled images are left out of both: they are never trained
or evaluated on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autovision.data.dataset import SPLITS, DatasetVersion, Item
from autovision.data.duplicates import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    exact_duplicate_groups,
    merge_groups,
    near_duplicates,
)
from autovision.data.quality import dataset_wide_flags, quality_flags

MIN_IMAGES_PER_LABEL = 10
"""Fewer images than this: the label cannot be trained (level ``error``)."""
RECOMMENDED_IMAGES_PER_LABEL = 100
"""Fewer images than this: below the AutoML guidance (level ``warning``)."""

GROUP_ISSUES = ("exact_duplicates", "conflicting_labels", "near_duplicates", "split_leakage")


def _image(it: Item) -> dict[str, Any]:
    return {"id": it.id, "source": it.source, "labels": list(it.labels), "split": it.split}


def _group(members: Sequence[Item]) -> dict[str, Any]:
    return {"images": [_image(it) for it in members]}


def _label_warnings(labels: dict[str, int]) -> list[dict[str, Any]]:
    warnings = []
    for label, count in sorted(labels.items(), key=lambda kv: (kv[1], kv[0])):
        noun = "image" if count == 1 else "images"
        if count < MIN_IMAGES_PER_LABEL:
            level = "error"
            message = (
                f"label {label!r} has {count} {noun}: too few to train "
                f"(at least {MIN_IMAGES_PER_LABEL} are needed)"
            )
        elif count < RECOMMENDED_IMAGES_PER_LABEL:
            level = "warning"
            message = (
                f"label {label!r} has {count} {noun}: below the recommended minimum "
                f"of {RECOMMENDED_IMAGES_PER_LABEL}"
            )
        else:
            continue
        warnings.append({"label": label, "count": count, "level": level, "message": message})
    return warnings


def _label_split_counts(ds: DatasetVersion, splits: Sequence[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {lab: dict.fromkeys(splits, 0) for lab in ds.labels}
    for it in ds.items:
        for lab in it.labels:
            row = counts[lab]
            row[it.split] = row.get(it.split, 0) + 1
    return counts


def _label_set(it: Item) -> tuple[str, ...]:
    return tuple(sorted(it.labels))


def _differing_labels(members: Sequence[Item]) -> list[list[str]] | None:
    """The distinct label sets of a group's labeled members when they disagree, else None."""
    label_sets = {_label_set(it) for it in members if it.labels}
    return [list(s) for s in sorted(label_sets)] if len(label_sets) > 1 else None


def _splits(members: Sequence[Item]) -> list[str] | None:
    """The splits of a group's labeled members when there are several, else None."""
    splits = {it.split for it in members if it.labels}
    if len(splits) < 2:
        return None
    order = {s: i for i, s in enumerate(SPLITS)}
    return sorted(splits, key=lambda s: (order.get(s, len(order)), s))


def _summary_counts(groups: list[dict[str, Any]]) -> dict[str, int]:
    return {"groups": len(groups), "images": sum(len(g["images"]) for g in groups)}


def dataset_report(
    ds: DatasetVersion, *, max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE
) -> dict[str, Any]:
    """The data report of a version: counts, label warnings, duplicates, leakage, quality."""
    items = ds.items
    by_id = {it.id: it for it in items}
    labels = ds.label_counts()
    splits = ds.split_counts()

    exact = [[by_id[i] for i in g] for g in exact_duplicate_groups(items)]
    near_groups, near_pairs = near_duplicates(items, max_distance)
    near = [[by_id[i] for i in g] for g in near_groups]

    conflicting: list[dict[str, Any]] = []
    leakage: list[dict[str, Any]] = []
    for members in exact:
        differing = _differing_labels(members)
        if differing:
            conflicting.append({"kind": "exact", "labels": differing, **_group(members)})
        leaked = _splits(members)
        if leaked:
            leakage.append({"kind": "exact", "splits": leaked, **_group(members)})
    # Near conflicts and leakage come from direct pairs, never from a chain of pairs.
    labeled_pairs = [
        (by_id[a], by_id[b]) for a, b in near_pairs if by_id[a].labels and by_id[b].labels
    ]
    disagree = [(a.id, b.id) for a, b in labeled_pairs if _label_set(a) != _label_set(b)]
    for group in merge_groups(disagree):
        members = [by_id[i] for i in group]
        conflicting.append(
            {"kind": "near", "labels": _differing_labels(members), **_group(members)}
        )
    straddle = [(a.id, b.id) for a, b in labeled_pairs if a.split != b.split]
    for group in merge_groups(straddle):
        members = [by_id[i] for i in group]
        leakage.append({"kind": "near", "splits": _splits(members), **_group(members)})

    quality = quality_flags(items)
    issues: dict[str, Any] = {
        "exact_duplicates": [_group(m) for m in exact],
        "conflicting_labels": conflicting,
        "near_duplicates": [_group(m) for m in near],
        "split_leakage": leakage,
        "quality": quality,
    }
    label_warnings = _label_warnings(labels)
    notes = [
        f"{flag}: {round(fraction * 100)}% of the images; this describes the dataset "
        "rather than problems with single images"
        for flag, fraction in dataset_wide_flags(quality, len(items)).items()
    ]
    summary: dict[str, Any] = {name: _summary_counts(issues[name]) for name in GROUP_ISSUES}
    summary["quality"] = {flag: len(entries) for flag, entries in quality.items()}
    summary["label_warnings"] = {
        level: sum(1 for w in label_warnings if w["level"] == level)
        for level in ("error", "warning")
    }
    summary["problems"] = len(ds.problems)
    summary["notes"] = notes

    return {
        "dataset": ds.name,
        "version": ds.version,
        "images": len(items),
        "labels": labels,
        "splits": splits,
        "multi_label": ds.multi_label,
        "label_split_counts": _label_split_counts(ds, list(splits)),
        "imbalance_ratio": (
            round(max(labels.values()) / min(labels.values()), 2) if labels else None
        ),
        "label_warnings": label_warnings,
        "issues": issues,
        "summary": summary,
        "problems": [dict(p) for p in ds.problems],
    }


# ---- the one-line summary an import ends with ---------------------------------------------

_SUMMARY_KINDS = (
    # (key, singular, plural): the order the summary line names them
    ("exact_duplicates", "exact duplicate group", "exact duplicate groups"),
    ("near_duplicates", "near-duplicate group", "near-duplicate groups"),
    ("conflicting_labels", "conflicting label", "conflicting labels"),
    ("split_leakage", "leak across splits", "leaks across splits"),
    ("quality_flags", "quality flag", "quality flags"),
    ("label_issues", "likely label error", "likely label errors"),
    ("label_issues_test", "likely label error in test", "likely label errors in test"),
    ("outliers", "outlier", "outliers"),
)
_CLEAN_KINDS = ("exact_duplicates", "near_duplicates", "conflicting_labels", "split_leakage")


def _count(value: Any) -> int:
    """A summary entry as one number: an int, ``{"groups": n}``, ``{"images": n}`` or a list."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("groups", "images", "count"):
            if isinstance(value.get(key), int):
                return value[key]
        return 0
    if isinstance(value, list):
        return len(value)
    return 0


def checks_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the checks of a :func:`dataset_report` found, as counts (the import's JSON).

    Groups for the duplicate, conflict and leakage kinds, flagged (image, flag) pairs for
    ``quality_flags`` with ``quality`` per flag, and the model-based kinds when the report
    has them. Counts come from ``report["summary"]``, so they match ``dataset show``.
    """
    summary = report.get("summary") or {}
    quality = {flag: int(n) for flag, n in (summary.get("quality") or {}).items() if n}
    out: dict[str, Any] = {name: _count(summary.get(name)) for name in GROUP_ISSUES}
    out["quality_flags"] = sum(quality.values())
    out["quality"] = quality
    for name in ("label_issues", "label_issues_test", "outliers"):
        if name in summary:
            out[name] = _count(summary[name])
    return out


def summary_line(counts: dict[str, Any], ref: str) -> str:
    """One line of what :func:`checks_summary` counted, naming only the kinds found:
    "2 exact duplicate groups, 1 leak across splits: see `autovision dataset show NAME`"."""
    found = [
        f"{n} {one if n == 1 else many}"
        for key, one, many in _SUMMARY_KINDS
        if (n := int(counts.get(key) or 0)) > 0
    ]
    clean = not any(counts.get(key) for key in _CLEAN_KINDS)
    head = "no duplicates, conflicts or leaks found"
    if not found:
        return head
    text = ", ".join(found)
    if clean:
        text = f"{head}; {text}"
    return f"{text}: see `autovision dataset show {ref}`"
