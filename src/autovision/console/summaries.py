"""The datasets list's figures: one row per dataset from a few grouped DB queries, and each
latest version's issue counts from the data report's summary, computed once per content
hash (a background thread; the list shows "…" meanwhile) and cached as JSON under
``WORKSPACE/cache/console/``, so the list stays fast however large the datasets are."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from autovision.workspace.db import DatasetRow, ItemRow, VersionRow

ISSUE_NAMES = {
    "exact_duplicates": ("exact-duplicate group", "exact-duplicate groups"),
    "near_duplicates": ("near-duplicate group", "near-duplicate groups"),
    "conflicting_labels": ("label conflict", "label conflicts"),
    "split_leakage": ("split leak", "split leaks"),
}


def dataset_rows(ws: Any) -> list[dict[str, Any]]:
    """``[{"name", "latest", "versions", "images", "multi_label", "created_at",
    "content_hash"}]`` by name, in two queries whatever the number of datasets."""
    top = (
        select(
            VersionRow.dataset_id,
            func.max(VersionRow.version).label("latest"),
            func.count().label("versions"),
        )
        .group_by(VersionRow.dataset_id)
        .subquery()
    )
    query = (
        select(DatasetRow.name, VersionRow, top.c.versions)
        .join(top, top.c.dataset_id == DatasetRow.id)
        .join(
            VersionRow,
            (VersionRow.dataset_id == DatasetRow.id) & (VersionRow.version == top.c.latest),
        )
        .order_by(DatasetRow.name)
    )
    with ws.Session() as s:
        rows = list(s.execute(query))
        ids = [v.id for _, v, _ in rows]
        images = dict(
            s.execute(
                select(ItemRow.version_id, func.count())
                .where(ItemRow.version_id.in_(ids))
                .group_by(ItemRow.version_id)
            ).all()
        )
    return [
        {
            "name": name,
            "latest": v.version,
            "versions": int(n),
            "images": int(images.get(v.id, 0)),
            "multi_label": v.multi_label,
            "created_at": v.created_at,
            "content_hash": v.content_hash,
        }
        for name, v, n in rows
    ]


def summary_of(report: dict[str, Any]) -> dict[str, Any]:
    """The list's figures from a data report: labels, and issues by kind with a total."""
    summary = report.get("summary") or {}
    counts = {names: int(summary.get(k, {}).get("groups", 0)) for k, names in ISSUE_NAMES.items()}
    counts[("quality flag", "quality flags")] = sum(
        int(v) for v in (summary.get("quality") or {}).values()
    )
    warnings = summary.get("label_warnings") or {}
    counts[("label warning", "label warnings")] = int(warnings.get("error", 0)) + int(
        warnings.get("warning", 0)
    )
    issues = {(one if n == 1 else many): n for (one, many), n in counts.items() if n}
    return {
        "labels": len(report.get("labels") or {}),
        "issues": issues,
        "issues_total": sum(issues.values()),
    }


class SummaryCache:
    """``get(content_hash)`` -> the cached figures or None (and computes them in the
    background: one at a time, each version once)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.folder = Path(ws.cache_dir) / "console"
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-summary")

    def _path(self, content_hash: str) -> Path:
        return self.folder / f"summary-{content_hash}.json"

    def cached(self, content_hash: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(content_hash).read_text())
        except (OSError, ValueError):
            return None

    def get(self, name: str, version: int, content_hash: str) -> dict[str, Any] | None:
        found = self.cached(content_hash) if content_hash else None
        if found is None and content_hash:
            with self._lock:
                if content_hash in self._pending:
                    return None
                self._pending.add(content_hash)
            self._pool.submit(self._compute_ref, f"{name}@{version}", content_hash)
        return found

    def pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def _compute_ref(self, ref: str, content_hash: str) -> None:
        try:
            self.compute(self.ws.dataset(ref), content_hash)
        except Exception:  # noqa: BLE001 - the list shows the figures as unknown
            self._write(content_hash, {"labels": None, "issues": {}, "issues_total": None})
        finally:
            with self._lock:
                self._pending.discard(content_hash)

    def compute(self, ds: Any, content_hash: str | None = None) -> dict[str, Any]:
        """The figures of a loaded version (written to the cache)."""
        from autovision.data.report import dataset_report

        figures = summary_of(dataset_report(ds))
        self._write(content_hash or ds.content_hash, figures)
        return figures

    def _write(self, content_hash: str, figures: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(content_hash)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(figures))
        os.replace(tmp, path)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
