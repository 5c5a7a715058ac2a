"""The usage and cost report: training runs and served models from the usage records (as
written while the work happened), and storage bytes measured now."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autovision.errors import AutovisionError
from autovision.usage.records import hist_percentile, read_records

PREDICTION_LOG_NOTE = "images of the logged predictions (those a dataset uses count there)"


class UsageError(AutovisionError):
    """The usage report cannot be made as asked (e.g. an invalid ``--since``)."""


@dataclass
class UsageReport:
    """:meth:`to_dict` is the ``autovision usage --json`` object."""

    since: str | None
    generated_at: str
    train: list[dict[str, Any]] = field(default_factory=list)
    serve: list[dict[str, Any]] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "generated_at": self.generated_at,
            "train": self.train,
            "serve": self.serve,
            "storage": self.storage,
        }


def usage_report(ws: Any, since: str | None = "7d", *, now: datetime | None = None) -> UsageReport:
    """Training runs and served-model windows that ended within ``since`` (``7d``, ``24h``,
    ``90m``; ``None`` or ``all``: every record), plus the workspace's storage now."""
    now = now or datetime.now(UTC)
    start = None if since in (None, "", "all") else now - timedelta(seconds=parse_since(since))
    refs = model_refs(ws)
    return UsageReport(
        since=None if start is None else str(since),
        generated_at=now.isoformat(),
        train=[train_row(r, refs) for r in read_records(ws, "train", start)],
        serve=serve_rows(read_records(ws, "serve", start), refs),
        storage=storage(ws, refs),
    )


def parse_since(text: str) -> float:
    from autovision.search.budget import parse_duration

    try:
        return parse_duration(text)
    except AutovisionError:
        raise UsageError(
            f"invalid --since {text!r}: expected a duration like 7d, 24h or 90m"
        ) from None


def model_refs(ws: Any) -> dict[str, str]:
    """Model id -> ``NAME@VERSION`` (its named model version); ids without one stay ids."""
    from autovision.versions.store import list_versions

    return {v.id: v.ref for v in list_versions(ws)}


def train_row(record: dict[str, Any], refs: dict[str, str]) -> dict[str, Any]:
    d = record["data"]
    return {
        "started_at": record["started_at"],
        "ended_at": record["ended_at"],
        "run_id": d.get("run_id"),
        "dataset": d.get("dataset"),
        "model": d.get("model"),
        "ref": refs.get(d.get("model") or "", d.get("model")),
        "outcome": d.get("outcome"),
        "wall_s": d.get("wall_s"),
        "cpu_s": d.get("cpu_s"),
        "node_hours": d.get("node_hours"),
        "peak_rss_bytes": d.get("peak_rss_bytes"),
        "gpu_s": d.get("gpu_s"),
        "device": d.get("device"),
        "trials": d.get("trials"),
        "stop_reason": d.get("stop_reason"),
        **({"error": d["error"]} if d.get("error") else {}),
    }


def serve_rows(records: list[dict[str, Any]], refs: dict[str, str]) -> list[dict[str, Any]]:
    """One row per served model: windows summed; CPU per 1,000 predictions is the summed CPU
    share over the summed predictions; p50/p99 are one window's own (exact) figures, or read
    from the windows' merged latency histograms (within 2.5 %)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_model.setdefault(r["subject"], []).append(r)
    rows = []
    for model, recs in sorted(by_model.items()):
        data = [r["data"] for r in recs]
        predictions = sum(int(d.get("predictions") or 0) for d in data)
        cpu = sum(float(d.get("cpu_s") or 0.0) for d in data)
        if len(data) == 1:
            p50, p99 = data[0].get("p50_ms"), data[0].get("p99_ms")
        else:
            merged: dict[int, int] = {}
            for d in data:
                for k, v in ((d.get("latency_hist") or {}).get("counts") or {}).items():
                    merged[int(k)] = merged.get(int(k), 0) + int(v)
            p50, p99 = (_ms(hist_percentile(merged, q)) for q in (50, 99))
        rows.append(
            {
                "model": model,
                "ref": refs.get(model, model),
                "windows": len(data),
                "first": recs[0]["started_at"],
                "last": recs[-1]["ended_at"],
                "requests": sum(int(d.get("requests") or 0) for d in data),
                "predictions": predictions,
                "cpu_s": round(cpu, 4),
                "cpu_s_per_1000": round(cpu / predictions * 1000, 4) if predictions else None,
                "p50_ms": p50,
                "p99_ms": p99,
            }
        )
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---- storage -----------------------------------------------------------------------------


def storage(ws: Any, refs: dict[str, str] | None = None) -> dict[str, Any]:
    """Bytes stored now: per dataset the unique blobs of all its versions' items (a blob
    shared by two datasets counts in both; ``blobs_bytes`` counts it once), per model its
    package directory, and the prediction log's images (blobs no dataset uses)."""
    from sqlalchemy import select

    from autovision.workspace.db import DatasetRow, ItemRow, VersionRow

    q = (
        select(DatasetRow.name, ItemRow.sha256)
        .join(VersionRow, VersionRow.dataset_id == DatasetRow.id)
        .join(ItemRow, ItemRow.version_id == VersionRow.id)
        .distinct()
    )
    blobs: dict[str, set[str]] = {}
    with ws.Session() as s:
        for name, sha in s.execute(q):
            blobs.setdefault(name, set()).add(sha)
    sizes = {sha: _blob_size(ws.blobs, sha) for shas in blobs.values() for sha in shas}
    datasets = [
        {
            "dataset": name,
            "blobs": len(shas),
            "bytes": sum(sizes[sha] or 0 for sha in shas),
            "missing_blobs": sum(1 for sha in shas if sizes[sha] is None),
        }
        for name, shas in sorted(blobs.items())
    ]
    logs = _log_storage(ws, sizes)
    refs = refs if refs is not None else model_refs(ws)
    models = []
    for m in ws.list_models():
        n_files, n_bytes = _dir_size(Path(m["path"]))
        models.append(
            {
                "model": m["model"],
                "ref": refs.get(m["model"], m["model"]),
                "files": n_files,
                "bytes": n_bytes,
            }
        )
    return {
        "datasets": datasets,
        "models": models,
        "prediction_logs": logs,
        "blobs_bytes": sum(v or 0 for v in sizes.values()) + logs["bytes"],
        "total_bytes": sum(v or 0 for v in sizes.values())
        + logs["bytes"]
        + sum(m["bytes"] for m in models),
    }


def _log_storage(ws: Any, dataset_sizes: dict[str, int | None]) -> dict[str, Any]:
    """Records of the prediction log and the bytes of their image blobs, counting only the
    blobs no dataset uses (a fed-back image counts under its dataset)."""
    from sqlalchemy import func, select

    from autovision.workspace.db import PredictionLogRow as R

    with ws.Session() as s:
        records = s.scalar(select(func.count()).select_from(R)) or 0
        shas = set(s.scalars(select(R.image_sha256).where(R.image_sha256.is_not(None))))
    own = shas - set(dataset_sizes)
    return {
        "records": records,
        "images": len(shas),
        "shared_with_datasets": len(shas) - len(own),
        "bytes": sum(_blob_size(ws.blobs, sha) or 0 for sha in own),
        "note": PREDICTION_LOG_NOTE,
    }


def _blob_size(blobs: Any, sha: str) -> int | None:
    """Stored bytes of one blob (ciphertext when encrypted), ``None`` when it is missing."""
    path = blobs.local_path(sha)
    try:
        return os.path.getsize(path) if blobs.local else int(blobs.fs.size(path))
    except (FileNotFoundError, OSError):
        return None


def _dir_size(path: Path) -> tuple[int, int]:
    files = total = 0
    if not path.is_dir():
        return 0, 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            p = Path(root) / n
            if p.is_file() and not p.is_symlink():
                files += 1
                total += p.stat().st_size
    return files, total
