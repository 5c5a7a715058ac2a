"""The data report of a dataset version.

``dataset_report(ds, *, checks=None) -> dict`` with keys:
``dataset``, ``version``, ``images``, ``labels`` ({label: count}), ``splits``
({"train": n, "validation": n, "test": n}), ``multi_label``, ``label_split_counts``
({label: {split: n}}), ``imbalance_ratio`` (largest / smallest label, or null),
``label_warnings`` ([{"label", "count", "level": "error"|"warning", "message"}]),
``issues``: {
  ``exact_duplicates``, ``conflicting_labels``, ``near_duplicates``, ``split_leakage``:
      lists of groups ``{"duplicate": "exact"|"near", "images": [{"id", "source", "labels",
      "split"}, ...]}`` (near groups also say ``"method"``: ``phash``, ``content`` or
      ``content+phash``; ``conflicting_labels`` and ``split_leakage`` groups also have
      ``"kind": "exact"|"near"`` and the differing ``"labels"`` or ``"splits"``),
  ``quality``: {flag: [{"id", "source", "value"}]},
  and, once ``autovision dataset check`` has stored them (``checks``, from
  :func:`autovision.checks.store.load_checks`): ``label_issues``, ``label_issues_test``,
  ``outliers``: the stored entries (worst first) with each image's ``source``, ``split``
  and ``labels``},
``checks`` ({kind: {"computed_at", "method", counts}} of the stored checks),
``summary`` (counts per issue kind, label warnings per level, and ``notes`` for quality
flags so common that they describe the dataset rather than single images),
``problems`` (the import problems stored with the version).

Each finding is listed once, in the first list that applies: conflicting_labels,
split_leakage, exact_duplicates, near_duplicates (a conflicting group that also straddles
splits keeps its ``"splits"``). A near group larger than the conflicting or leaking pairs
inside it stays listed: it says more. ``duplicate`` tells
:func:`autovision.data.edit.issue_exclusions` which groups to dedupe, whichever list shows
them. Near duplicates are pHash pairs plus the stored content pairs (embedding similarity:
crops, flips, colour changes); pairs of one file are exact copies, not near ones.

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


def _content_pairs(checks: dict[str, Any], by_id: dict[int, Item]) -> list[tuple[int, int, float]]:
    """The stored content pairs of items of this version that are different files."""
    stored = (checks.get("content_duplicates") or {}).get("pairs") or []
    out = []
    for a, b, sim in stored:
        ia, ib = by_id.get(int(a)), by_id.get(int(b))
        if ia is not None and ib is not None and ia.sha256 != ib.sha256:
            out.append((min(ia.id, ib.id), max(ia.id, ib.id), float(sim)))
    return out


def _with_exact_copies(
    groups: list[list[int]], exact: list[list[int]], by_id: dict[int, Item]
) -> list[list[int]]:
    """Each group with the exact copies of its members; groups of a single file dropped."""
    copies = {i: g for g in exact for i in g}
    out = []
    for g in groups:
        members = sorted({j for i in g for j in copies.get(i, [i])})
        if len({by_id[i].sha256 for i in members}) > 1:
            out.append(members)
    return sorted(out, key=lambda g: g[0])


def _method(ids: Sequence[int], methods: dict[tuple[int, int], set[str]]) -> str:
    """``phash``, ``content`` or ``phash+content``: what found the direct pairs of a group."""
    members = set(ids)
    found = set().union(*(m for (a, b), m in methods.items() if a in members and b in members))
    return "+".join(sorted(found)) or "phash"


def _entries(stored: list[dict[str, Any]], by_id: dict[int, Item]) -> list[dict[str, Any]]:
    """Stored check entries of items of this version, with their source, split and labels."""
    out = []
    for e in stored or []:
        it = by_id.get(int(e.get("id", -1)))
        if it is not None:
            out.append({**e, "source": it.source, "split": it.split, "labels": list(it.labels)})
    return out


def _check_sections(
    checks: dict[str, Any], by_id: dict[int, Item]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """``issues`` lists and ``report["checks"]`` summaries of the stored model-based checks."""
    issues: dict[str, list[dict[str, Any]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for kind, result in checks.items():
        if not isinstance(result, dict):
            continue
        head = {"computed_at": result.get("computed_at"), "method": result.get("method")}
        if kind == "label_issues":
            issues["label_issues"] = _entries(result.get("label_issues"), by_id)
            issues["label_issues_test"] = _entries(result.get("label_issues_test"), by_id)
            info[kind] = {
                **head,
                "folds": result.get("folds"),
                "checked": result.get("checked"),
                "checked_test": result.get("checked_test"),
                "found": len(issues["label_issues"]),
                "found_test": len(issues["label_issues_test"]),
            }
        elif kind == "outliers":
            issues["outliers"] = _entries(result.get("outliers"), by_id)
            info[kind] = {
                **head,
                "k": result.get("k"),
                "threshold": result.get("threshold"),
                "checked": result.get("checked"),
                "found": len(issues["outliers"]),
            }
        elif kind == "content_duplicates":
            info[kind] = {
                **head,
                "threshold": result.get("threshold"),
                "checked": result.get("checked"),
                "pairs": len(result.get("pairs") or []),
            }
    return issues, info


def dataset_report(
    ds: DatasetVersion,
    *,
    max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE,
    checks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The data report of a version: counts, label warnings, duplicates, leakage, quality,
    and the model-based ``checks`` stored for it (``autovision.checks.store.load_checks``)."""
    items = ds.items
    by_id = {it.id: it for it in items}
    labels = ds.label_counts()
    splits = ds.split_counts()
    checks = checks or {}

    exact_ids = exact_duplicate_groups(items)
    exact = [[by_id[i] for i in g] for g in exact_ids]
    phash_groups, phash_pairs = near_duplicates(items, max_distance)
    methods: dict[tuple[int, int], set[str]] = {p: {"phash"} for p in phash_pairs}
    for a, b, _ in _content_pairs(checks, by_id):
        methods.setdefault((a, b), set()).add("content")
    near_pairs = sorted(methods)
    near_ids = _with_exact_copies(merge_groups(phash_groups, near_pairs), exact_ids, by_id)
    near = [[by_id[i] for i in g] for g in near_ids]

    def near_group(members: Sequence[Item], **kw: Any) -> dict[str, Any]:
        ids = [it.id for it in members]
        return {"duplicate": "near", "method": _method(ids, methods), **kw, **_group(members)}

    conflicting: list[dict[str, Any]] = []
    leakage: list[dict[str, Any]] = []
    for members in exact:
        differing = _differing_labels(members)
        if differing:
            conflicting.append(
                {"kind": "exact", "duplicate": "exact", "labels": differing, **_group(members)}
            )
        leaked = _splits(members)
        if leaked:
            leakage.append(
                {"kind": "exact", "duplicate": "exact", "splits": leaked, **_group(members)}
            )
    # Near conflicts and leakage come from direct pairs, never from a chain of pairs.
    labeled_pairs = [
        (by_id[a], by_id[b]) for a, b in near_pairs if by_id[a].labels and by_id[b].labels
    ]
    disagree = [(a.id, b.id) for a, b in labeled_pairs if _label_set(a) != _label_set(b)]
    for group in merge_groups(disagree):
        members = [by_id[i] for i in group]
        conflicting.append(near_group(members, kind="near", labels=_differing_labels(members)))
    straddle = [(a.id, b.id) for a, b in labeled_pairs if a.split != b.split]
    for group in merge_groups(straddle):
        members = [by_id[i] for i in group]
        leakage.append(near_group(members, kind="near", splits=_splits(members)))

    # Each finding once: conflicting_labels > split_leakage > exact > near duplicates. A
    # conflicting group that also straddles splits keeps its "splits" (edit.py reads it).
    listed: dict[frozenset[int], dict[str, Any]] = {}
    for g in conflicting:
        listed[frozenset(m["id"] for m in g["images"])] = g
    kept_leaks = []
    for g in leakage:
        key = frozenset(m["id"] for m in g["images"])
        if key in listed:
            listed[key]["splits"] = g["splits"]
        else:
            listed[key] = g
            kept_leaks.append(g)
    exact_groups = [
        {"duplicate": "exact", **_group(m)}
        for m in exact
        if frozenset(it.id for it in m) not in listed
    ]
    near_list = [near_group(m) for m in near if frozenset(it.id for it in m) not in listed]

    quality = quality_flags(items)
    issues: dict[str, Any] = {
        "exact_duplicates": exact_groups,
        "conflicting_labels": conflicting,
        "near_duplicates": near_list,
        "split_leakage": kept_leaks,
        "quality": quality,
    }
    found, check_info = _check_sections(checks, by_id)
    issues.update(found)
    label_warnings = _label_warnings(labels)
    notes = [
        f"{flag}: {round(fraction * 100)}% of the images; this describes the dataset "
        "rather than problems with single images"
        for flag, fraction in dataset_wide_flags(quality, len(items)).items()
    ]
    summary: dict[str, Any] = {name: _summary_counts(issues[name]) for name in GROUP_ISSUES}
    summary["quality"] = {flag: len(entries) for flag, entries in quality.items()}
    for name, entries in found.items():
        summary[name] = len(entries)
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
        "checks": check_info,
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
