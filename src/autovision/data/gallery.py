"""Fast views of one dataset version for the console's gallery, straight from the DB.

A page of the gallery must stay fast at 50,000 images, so nothing here loads the version's
:class:`~autovision.data.dataset.Item` objects:

- :func:`gallery_page`: keyset pagination on the item id (``WHERE item_id > cursor ORDER BY
  item_id LIMIT n``: the same cost on page 1 and page 800) with the filters in SQL (label,
  split, filename substring, issue). Totals are counted once per version and filter: a
  version never changes, so its counts never go stale.
- Issues come from the data report (:func:`autovision.data.report.dataset_report`, with
  the stored model-based checks where computed). The report is computed once per version
  content (and set of checks) and its id sets kept as JSON under ``cache/gallery/``:
  :func:`issue_index`.
- :func:`item_detail`, :func:`distribution` and :func:`version_diff` serve the item panel,
  the class chart and the "what changed" display.
"""

from __future__ import annotations

import hashlib
import json
import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    any_,
    bindparam,
    cast,
    false,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from autovision.data import report as _report
from autovision.data.dataset import SPLITS, parse_ref
from autovision.data.quality import FLAGS
from autovision.errors import DatasetError
from autovision.security import crypto
from autovision.workspace.db import DatasetCheckRow, DatasetRow, ItemRow, VersionRow

__all__ = [
    "ISSUES",
    "distribution",
    "gallery_page",
    "issue_index",
    "item_detail",
    "item_sha256",
    "item_thumbnail",
    "version_diff",
    "version_info",
]

DEFAULT_LIMIT = 60
MAX_LIMIT = 500
GROUP_ISSUES = ("exact_duplicates", "near_duplicates", "conflicting_labels", "split_leakage")
CHECK_ISSUES = ("label_issues", "label_issues_test", "outliers")
"""Model-based issues (``autovision dataset check``): present once computed."""
ISSUES = (*GROUP_ISSUES, "quality", *FLAGS, *CHECK_ISSUES)
_INDEX_FORMAT = 1
_MEMO_SIZE = 1024


@dataclass(frozen=True)
class _Version:
    name: str
    version: int
    row_id: int
    content_hash: str
    multi_label: bool

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class _Memo(OrderedDict):
    """A small LRU: versions are immutable, so what is computed of one stays true. Locked:
    the console answers requests from several threads."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            return super().get(key, default)

    def put(self, key: Any, value: Any) -> Any:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)
        return value


_counts = _Memo(_MEMO_SIZE)
_distributions = _Memo(64)
_indexes = _Memo(8)


def _resolve(ws: Any, ref: str) -> _Version:
    name, version = parse_ref(ref)
    with ws.Session() as s:
        q = (
            select(
                VersionRow.version, VersionRow.id, VersionRow.content_hash, VersionRow.multi_label
            )
            .join(DatasetRow, DatasetRow.id == VersionRow.dataset_id)
            .where(DatasetRow.name == name)
        )
        if version is None:
            q = q.order_by(VersionRow.version.desc()).limit(1)
        else:
            q = q.where(VersionRow.version == version)
        row = s.execute(q).first()
    if row is None:
        if version is None or name not in ws.dataset_names():
            raise DatasetError(f"no dataset named {name!r} in {ws.root}")
        raise DatasetError(f"dataset {name!r} has no version {version}")
    return _Version(name, row[0], row[1], row[2] or "", bool(row[3]))


def _dialect(ws: Any) -> str:
    return ws.engine.dialect.name


def _json_text(ws: Any, value: Any) -> str:
    """``value`` as the DB stores it in a JSON column (the engine's own serializer)."""
    return (getattr(ws.engine.dialect, "_json_serializer", None) or json.dumps)(value)


def _has_label(ws: Any, v: _Version, label: str) -> ColumnElement[bool]:
    """Items whose JSON list of labels holds ``label`` exactly. A NUL matches nothing: no
    stored label holds one (PostgreSQL's jsonb cannot, and the workspace refuses them)."""
    if "\x00" in label:
        return false()
    dialect = _dialect(ws)
    if dialect == "sqlite" and not v.multi_label:
        # At most one label: the stored text is exactly ``["label"]``, which the
        # (version_id, labels, item_id) index finds without reading other rows.
        return type_coerce(ItemRow.labels, Text) == _json_text(ws, [label])
    if dialect == "sqlite":
        each = func.json_each(ItemRow.labels).table_valued("value")
        return select(literal(1)).select_from(each).where(each.c.value == label).exists()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return cast(ItemRow.labels, JSONB).contains([label])
    # Elsewhere: the label as it appears in the stored JSON text.
    return cast(ItemRow.labels, Text).contains(json.dumps(label), autoescape=True)


def _source_has(ws: Any, needle: str) -> ColumnElement[bool]:
    """Case-insensitive substring of the source; ``%``, ``_`` and ``/`` are plain characters.
    A NUL matches nothing (no path holds one; SQLite would cut the pattern there)."""
    if "\x00" in needle:
        return false()
    if _dialect(ws) == "sqlite":  # SQLite's LIKE ignores ASCII case by itself: no lower()
        return ItemRow.source.contains(needle, autoescape=True)
    return func.lower(ItemRow.source).contains(needle.lower(), autoescape=True)


def _id_in(ws: Any, ids: list[int]) -> ColumnElement[bool]:
    """``item_id IN ids`` with one bound parameter however many ids (SQLite's limit on
    parameters is 32,766; an issue can flag more images than that)."""
    dialect = _dialect(ws)
    if dialect == "sqlite":
        each = func.json_each(bindparam("issue_ids", json.dumps(ids))).table_valued("value")
        return ItemRow.item_id.in_(select(each.c.value))
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY
        from sqlalchemy.types import Integer

        return ItemRow.item_id == any_(bindparam("issue_ids", ids, type_=ARRAY(Integer)))
    return ItemRow.item_id.in_(ids)


def _cursor(after: Any) -> int:
    if after is None or after == "":
        return 0
    if isinstance(after, bool) or not (
        (isinstance(after, int) and after >= 0) or (isinstance(after, str) and after.isdigit())
    ):
        raise DatasetError(f"invalid gallery cursor {after!r}: expected an item id")
    return int(after)


def _text(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DatasetError(f"invalid {what} filter {value!r}: expected text")
    return value


# ---- issues: the report's id sets, cached per version content ------------------------------


def _checks_fingerprint(ws: Any, v: _Version) -> str:
    """Which stored checks apply to this content (a new check run changes the issues)."""
    with ws.Session() as s:
        rows = s.execute(
            select(
                DatasetCheckRow.kind, DatasetCheckRow.created_at, DatasetCheckRow.content_hash
            ).where(DatasetCheckRow.dataset == v.name, DatasetCheckRow.version == v.version)
        ).all()
    parts = sorted(
        f"{kind}:{at.isoformat() if at else ''}"
        for kind, at, chash in rows
        if not chash or chash == v.content_hash
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12] if parts else "none"


def _compute_report(ws: Any, ref: str) -> dict[str, Any]:
    ds = ws.dataset(ref)
    from autovision.checks.store import load_checks

    return _report.dataset_report(ds, checks=load_checks(ws, ds))


def _entry(e: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in e.items() if k not in ("id", "source")}


def _index_from_report(report: dict[str, Any]) -> dict[str, Any]:
    found = report.get("issues") or {}
    ids: dict[str, list[int]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in GROUP_ISSUES:
        listed = []
        for g in found.get(kind) or []:
            members = [int(m["id"]) for m in g.get("images", [])]
            listed.append({"ids": members, **{k: v for k, v in g.items() if k != "images"}})
        groups[kind] = listed
        ids[kind] = sorted({i for g in listed for i in g["ids"]})
    # The report lists each group once (a leaking exact group under split_leakage only); the
    # duplicate filters still show every group of their kind, whichever list has it.
    for kind, tag in (("exact_duplicates", "exact"), ("near_duplicates", "near")):
        tagged = (
            g["ids"] for other in GROUP_ISSUES for g in groups[other] if g.get("duplicate") == tag
        )
        ids[kind] = sorted({*ids[kind], *(i for g in tagged for i in g)})
    flagged: set[int] = set()
    quality = found.get("quality") or {}
    for flag in sorted({*FLAGS, *quality}):
        es = quality.get(flag) or []
        entries[flag] = {str(e["id"]): _entry(e) for e in es}
        ids[flag] = sorted({int(e["id"]) for e in es})
        flagged.update(ids[flag])
    ids["quality"] = sorted(flagged)
    computed = []
    for kind in CHECK_ISSUES:
        es = found.get(kind)
        if es is None:
            continue
        computed.append(kind)
        entries[kind] = {str(e["id"]): _entry(e) for e in es}
        ids[kind] = sorted({int(e["id"]) for e in es})
    return {
        "format": _INDEX_FORMAT,
        "ids": ids,
        "groups": groups,
        "entries": entries,
        "checks_computed": computed,
        "summary": report.get("summary") or {},
    }


def _index_path(ws: Any, v: _Version, fingerprint: str) -> Path:
    return Path(ws.cache_dir) / "gallery" / f"{v.content_hash[:40]}-{fingerprint}.json"


def _issue_index(ws: Any, v: _Version) -> dict[str, Any]:
    fingerprint = _checks_fingerprint(ws, v)
    path = _index_path(ws, v, fingerprint)
    memo = _indexes.get(str(path))
    if memo is not None:
        return memo
    aad = f"gallery:{path.name}".encode()
    index = None
    if path.exists():
        try:
            index = json.loads(crypto.read_file(path, aad, ws.blobs.key))
        except (ValueError, OSError):
            index = None  # a damaged cache file is recomputed
        if index is not None and index.get("format") != _INDEX_FORMAT:
            index = None
    if index is None:
        index = _index_from_report(_compute_report(ws, v.ref))
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob(f"{v.content_hash[:40]}-*.json"):
            old.unlink(missing_ok=True)
        crypto.write_file(path, json.dumps(index).encode(), aad, ws.blobs.key)
    index["cache_key"] = path.stem
    return _indexes.put(str(path), index)


def issue_index(ws: Any, ref: str) -> dict[str, Any]:
    """The issues of a version as id sets: ``{"ids": {issue: sorted ids}, "groups": {kind:
    [{"ids", ...}]}, "entries": {issue: {id: details}}, "checks_computed", "summary"}``.

    Computes the data report the first time for this content (seconds at 50,000 images;
    the console can call this after an import so the first filtered page is fast)."""
    return _issue_index(ws, _resolve(ws, ref))


def _issue_ids(ws: Any, v: _Version, issue: str) -> tuple[list[int], str]:
    """The sorted ids flagged with ``issue``, and the cache key they come from."""
    name = issue.removeprefix("quality.").removeprefix("quality:")
    if name not in ISSUES:
        raise DatasetError(f"unknown issue {issue!r}; one of {', '.join(ISSUES)}")
    index = _issue_index(ws, v)
    return index["ids"].get(name, []), index["cache_key"]


# ---- pages ----------------------------------------------------------------------------------

_PAGE_COLUMNS = (
    ItemRow.item_id,
    ItemRow.source,
    ItemRow.labels,
    ItemRow.split,
    ItemRow.width,
    ItemRow.height,
    ItemRow.sha256,
)


def _card(row: Any) -> dict[str, Any]:
    item_id, source, labels, split, width, height, sha = row
    return {
        "id": item_id,
        "source": source,
        "labels": list(labels or ()),
        "split": split,
        "width": width,
        "height": height,
        "sha256": sha,
    }


def gallery_page(
    ws: Any,
    ref: str,
    *,
    label: str | None = None,
    split: str | None = None,
    issue: str | None = None,
    filename: str | None = None,
    after: int | str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """One page of a version's images, in item id order, after the cursor ``after``.

    Filters (all optional, combined with AND): ``label`` (items carrying exactly that label),
    ``split``, ``filename`` (case-insensitive substring of the source; ``%`` and ``_`` are
    plain characters) and ``issue`` (one of :data:`ISSUES`). Returns ``{"items": [{"id",
    "source", "labels", "split", "width", "height", "sha256"}], "next": cursor or None,
    "total": matching images}``; pass ``next`` back as ``after`` for the following page.
    On SQLite the filename filter ignores the case of ASCII letters only.
    """
    v = _resolve(ws, ref)
    start = _cursor(after)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise DatasetError(f"invalid page size {limit!r}: from 1 to {MAX_LIMIT}")
    label, split = _text(label, "label"), _text(split, "split")
    issue, filename = _text(issue, "issue"), _text(filename, "filename")

    conds: list[ColumnElement[bool]] = [ItemRow.version_id == v.row_id]
    if split is not None:
        conds.append(ItemRow.split == split)
    if label is not None:
        conds.append(_has_label(ws, v, label))
    if filename is not None:
        conds.append(_source_has(ws, filename))
    others = len(conds) > 1
    issue_ids: list[int] | None = None
    index_key = None
    if issue is not None:
        issue_ids, index_key = _issue_ids(ws, v, issue)

    key = (ws.db_url, v.row_id, v.content_hash, label, split, filename, issue, index_key)
    with ws.Session() as s:

        def fetch(extra: list[ColumnElement[bool]], n: int) -> list[Any]:
            q = select(*_PAGE_COLUMNS).where(*conds, ItemRow.item_id > start, *extra)
            return list(s.execute(q.order_by(ItemRow.item_id).limit(n)).all())

        if issue_ids is None:
            rows = fetch([], limit + 1)
        else:
            # The set's next ids in growing chunks: a page never sends the whole set.
            rows, pos, chunk = [], bisect_right(issue_ids, start), limit + 1
            while pos < len(issue_ids) and len(rows) <= limit:
                part = issue_ids[pos : pos + chunk]
                rows += fetch([_id_in(ws, part)], limit + 1 - len(rows))
                pos, chunk = pos + len(part), chunk * 4
        total = _counts.get(key)
        if total is None:
            if issue_ids is None:
                total = int(s.scalar(select(func.count()).where(*conds)) or 0)
            elif not others or not issue_ids:
                total = len(issue_ids)
            else:  # the other filters' ids (from their indexes), met with the set here
                matching = s.scalars(select(ItemRow.item_id).where(*conds))
                total = len(set(issue_ids).intersection(matching))
            _counts.put(key, total)
    more = len(rows) > limit
    items = [_card(r) for r in rows[:limit]]
    return {
        "dataset": v.name,
        "version": v.version,
        "items": items,
        "next": items[-1]["id"] if more else None,
        "total": total,
    }


def item_sha256(ws: Any, ref: str, item_id: int) -> str:
    """The blob hash of one item: what its thumbnail is made of (the console's ETag, checked
    before any thumbnail is read)."""
    v = _resolve(ws, ref)
    with ws.Session() as s:
        sha = s.scalar(
            select(ItemRow.sha256).where(
                ItemRow.version_id == v.row_id, ItemRow.item_id == int(item_id)
            )
        )
    if sha is None:
        raise DatasetError(f"{v.ref} has no image with id {item_id}")
    return sha


def item_thumbnail(ws: Any, ref: str, item_id: int, size: int = 256) -> bytes:
    """The thumbnail of one item (errors name the item and the version)."""
    from autovision.data.thumbnails import thumbnail

    v = _resolve(ws, ref)
    with ws.Session() as s:
        row = s.execute(
            select(ItemRow.sha256, ItemRow.source).where(
                ItemRow.version_id == v.row_id, ItemRow.item_id == int(item_id)
            )
        ).first()
    if row is None:
        raise DatasetError(f"{v.ref} has no image with id {item_id}")
    return thumbnail(ws, row[0], size, what=f"item {item_id} ({row[1]}) of {v.ref}")


_NO_INDEX: dict[str, Any] = {"groups": {}, "entries": {}, "checks_computed": []}


def item_detail(ws: Any, ref: str, item_id: int, *, issues: bool = True) -> dict[str, Any]:
    """Everything about one image: its fields, metadata and stats, the issues it has
    (``[{"issue", ...details}]``) and the other members of its duplicate groups.

    ``issues=False``: the fields only (``issues`` and ``duplicates`` empty, ``issues_known``
    False), without computing the version's issue index (seconds at 50,000 images the first
    time): the console asks so while that index is computed in the background."""
    v = _resolve(ws, ref)
    with ws.Session() as s:
        row = s.scalar(
            select(ItemRow).where(ItemRow.version_id == v.row_id, ItemRow.item_id == int(item_id))
        )
        if row is None:
            raise DatasetError(f"{v.ref} has no image with id {item_id}")
        index = _issue_index(ws, v) if issues else _NO_INDEX
        found: list[dict[str, Any]] = []
        related: set[int] = set()
        for kind in GROUP_ISSUES:
            for g in index["groups"].get(kind, []):
                if row.item_id in g["ids"]:
                    found.append({"issue": kind, **{k: g[k] for k in g if k != "ids"}})
                    found[-1]["group"] = list(g["ids"])
                    related.update(g["ids"])
        for kind, by_id in index["entries"].items():
            entry = by_id.get(str(row.item_id))
            if entry is not None:
                found.append({"issue": kind, **entry})
        related.discard(row.item_id)
        members = []
        if related:
            members = [
                _card(r)
                for r in s.execute(
                    select(*_PAGE_COLUMNS)
                    .where(ItemRow.version_id == v.row_id, ItemRow.item_id.in_(sorted(related)))
                    .order_by(ItemRow.item_id)
                ).all()
            ]
        return {
            "dataset": v.name,
            "version": v.version,
            "id": row.item_id,
            "source": row.source,
            "sha256": row.sha256,
            "labels": list(row.labels or ()),
            "split": row.split,
            "width": row.width,
            "height": row.height,
            "format": row.format,
            "phash": row.phash,
            "metadata": dict(row.meta or {}),
            "stats": dict(row.stats or {}),
            "issues": found,
            "issues_known": issues,
            "duplicates": members,
            "checks_computed": list(index["checks_computed"]),
        }


# ---- distribution and diff ------------------------------------------------------------------


def _split_order(splits: set[str]) -> list[str]:
    return [*SPLITS, *sorted(splits - set(SPLITS))]


def _label_split_rows(ws: Any, v: _Version) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """(label, split, count) over the version, and the images per split: one GROUP BY of
    the stored label lists (a version has few distinct ones), expanded here."""
    with ws.Session() as s:
        grouped = s.execute(
            select(cast(ItemRow.labels, Text), ItemRow.split, func.count())
            .where(ItemRow.version_id == v.row_id)
            .group_by(cast(ItemRow.labels, Text), ItemRow.split)
        ).all()
    counts: dict[tuple[str, str], int] = {}
    splits: dict[str, int] = {}
    for text, split, n in grouped:
        splits[split] = splits.get(split, 0) + int(n)
        for lab in json.loads(text) if text else ():
            counts[(lab, split)] = counts.get((lab, split), 0) + int(n)
    return [(a, b, n) for (a, b), n in counts.items()], splits


def distribution(ws: Any, ref: str) -> dict[str, Any]:
    """Images per label and split, with the report's label warnings and imbalance ratio:
    ``{"images", "splits", "labels", "label_split_counts", "imbalance_ratio",
    "label_warnings", "multi_label"}`` (the same keys and values as the data report's)."""
    v = _resolve(ws, ref)
    memo = _distributions.get((ws.db_url, v.row_id, v.content_hash))
    if memo is not None:
        return memo
    rows, split_counts = _label_split_rows(ws, v)
    order = [s for s in _split_order(set(split_counts)) if s in split_counts or s in SPLITS]
    splits = {s: int(split_counts.get(s, 0)) for s in order}
    labels: dict[str, int] = {}
    table: dict[str, dict[str, int]] = {}
    for lab, split, n in rows:
        labels[lab] = labels.get(lab, 0) + n
        table.setdefault(lab, dict.fromkeys(splits, 0))[split] = n
    labels = {lab: labels[lab] for lab in sorted(labels)}
    out = {
        "dataset": v.name,
        "version": v.version,
        "images": sum(splits.values()),
        "splits": splits,
        "multi_label": v.multi_label,
        "labels": labels,
        "label_split_counts": {lab: table[lab] for lab in labels},
        "imbalance_ratio": (
            round(max(labels.values()) / min(labels.values()), 2) if labels else None
        ),
        "label_warnings": _report._label_warnings(labels),
    }
    return _distributions.put((ws.db_url, v.row_id, v.content_hash), out)


def version_diff(ws: Any, name: str, a: int, b: int) -> dict[str, Any]:
    """What changed from version ``a`` to ``b`` of a dataset: ids ``added`` and
    ``removed``, ``relabeled`` ``[{"id", "from", "to"}]`` (label lists) and
    ``moved_split`` ``[{"id", "from", "to"}]``. Joins on the item id in SQL: only the
    changed rows reach Python."""
    va, vb = _resolve(ws, f"{name}@{int(a)}"), _resolve(ws, f"{name}@{int(b)}")
    old, new = ItemRow.__table__.alias("old"), ItemRow.__table__.alias("new")
    same = and_(old.c.item_id == new.c.item_id, old.c.version_id == va.row_id)
    with ws.Session() as s:

        def only(x: Any, vx: _Version, y: Any, vy: _Version) -> list[int]:
            there = select(literal(1)).where(
                y.c.version_id == vy.row_id, y.c.item_id == x.c.item_id
            )
            return list(
                s.scalars(
                    select(x.c.item_id)
                    .where(x.c.version_id == vx.row_id, ~there.exists())
                    .order_by(x.c.item_id)
                )
            )

        changed = s.execute(
            select(old.c.item_id, old.c.labels, new.c.labels, old.c.split, new.c.split)
            .join(new, same)
            .where(
                new.c.version_id == vb.row_id,
                (cast(old.c.labels, Text) != cast(new.c.labels, Text))
                | (old.c.split != new.c.split),
            )
            .order_by(old.c.item_id)
        ).all()
        added, removed = only(new, vb, old, va), only(old, va, new, vb)
    relabeled = [
        {"id": i, "from": list(la or ()), "to": list(lb or ())}
        for i, la, lb, _, _ in changed
        if list(la or ()) != list(lb or ())
    ]
    moved = [{"id": i, "from": sa, "to": sb} for i, _, _, sa, sb in changed if sa != sb]
    return {
        "dataset": name,
        "a": va.version,
        "b": vb.version,
        "added": added,
        "removed": removed,
        "relabeled": relabeled,
        "moved_split": moved,
    }


def version_info(ws: Any, ref: str) -> dict[str, Any]:
    """A version's own fields without its items: ``{"dataset", "version", "versions" (all
    of the dataset), "parent_version", "created_at", "multi_label", "source", "note",
    "images", "edits" (the lineage keys of an edit: excluded/relabeled counts), "checks":
    {kind: {"computed_at", "counts": {list: n}}}}`` (stored model-based checks of this
    content: label issues and outliers counted straight from the stored results)."""
    v = _resolve(ws, ref)
    with ws.Session() as s:
        row = s.get(VersionRow, v.row_id)
        assert row is not None
        versions = list(
            s.scalars(
                select(VersionRow.version)
                .where(VersionRow.dataset_id == row.dataset_id)
                .order_by(VersionRow.version)
            )
        )
        images = int(s.scalar(select(func.count()).where(ItemRow.version_id == v.row_id)) or 0)
        stored = s.execute(
            select(
                DatasetCheckRow.kind,
                DatasetCheckRow.created_at,
                DatasetCheckRow.content_hash,
                DatasetCheckRow.result,
            ).where(DatasetCheckRow.dataset == v.name, DatasetCheckRow.version == v.version)
        ).all()
        params = dict(row.params or {})
        info = {
            "dataset": v.name,
            "version": v.version,
            "versions": versions,
            "parent_version": row.parent_version,
            "created_at": row.created_at,
            "multi_label": bool(row.multi_label),
            "source": row.source or "",
            "note": row.note or "",
            "images": images,
        }
    info["edits"] = {
        k: len(params[k]) for k in ("excluded", "relabeled") if isinstance(params.get(k), list)
    }
    checks: dict[str, Any] = {}
    for kind, at, chash, result in stored:
        if chash and chash != v.content_hash:
            continue
        counts = {
            k: len(val)
            for k, val in (result or {}).items()
            if isinstance(val, list) and k in (*CHECK_ISSUES, "pairs")
        }
        checks[kind] = {"computed_at": at, "counts": counts}
    info["checks"] = checks
    return info
