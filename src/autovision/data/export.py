"""Export a dataset version so that importing the export gives the same images, labels and
splits.

- ``csv``: ``OUT/dataset.csv`` in the cloud AutoML layout (``ML_USE,PATH,LABEL...,meta:K=V``)
  and the images under ``OUT/images/<id>.<ext>``.
- ``jsonl``: ``OUT/dataset.jsonl`` in the Vertex AI layout (with ``metadata``), same images.
- ``folder``: ``OUT/<label>/<id>.<ext>`` (unlabeled images directly in ``OUT``). A folder
  carries no split and no metadata, and only single-label datasets fit it.

Image files keep their original extension (or one from their format) and their exact bytes.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autovision.data.dataset import DatasetVersion, Item
from autovision.data.readers import INDEX_FILES
from autovision.errors import DatasetError
from autovision.security.audit import audited

EXPORT_FORMATS = ("csv", "jsonl", "folder")
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tiff"}
_EXT["ICO"] = "ico"
_IMAGE_SUFFIXES = {"jpg", "jpeg", "jpe", "png", "webp", "bmp", "gif", "tif", "tiff", "ico"}
_CSV_ML_USE = {"train": "TRAIN", "validation": "VALIDATION", "test": "TEST"}
_JSONL_ML_USE = {"train": "training", "validation": "validation", "test": "test"}


def file_name(item: Item) -> str:
    """``<id>.<ext>``, with the source's own image extension when it has one."""
    suffix = Path(item.source.split("?", 1)[0]).suffix.lower().lstrip(".")
    ext = suffix if suffix in _IMAGE_SUFFIXES else _EXT.get(item.format.upper(), "img")
    return f"{item.id}.{ext}"


def _prepare(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: the export folder must be new or empty")
    out.mkdir(parents=True, exist_ok=True)


def _write_images(ws: Any, ds: DatasetVersion, folder: Path) -> Iterator[tuple[Item, str]]:
    """Copy every image's bytes into ``folder``; yields the item and its path there."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in ds.items:
        name = file_name(item)
        (folder / name).write_bytes(ws.image_bytes(item))
        yield item, name


@audited(
    "dataset.export",
    args=("ref", "out", "format"),
    result=lambda r: {"images": r["images"], "path": r["path"]},
)
def export_dataset(
    ws: Any, ref: str, out: str | os.PathLike[str], format: str = "csv"
) -> dict[str, Any]:
    """Write ``ref`` to the new folder ``out``; returns a summary with the path to import."""
    if format not in EXPORT_FORMATS:
        raise DatasetError(f"unknown export format {format!r} (one of {', '.join(EXPORT_FORMATS)})")
    ds = ws.dataset(ref)
    out = Path(out).expanduser()
    if format == "folder" and any(len(it.labels) > 1 for it in ds.items):
        raise DatasetError(
            f"{ds.ref} has images with several labels; a folder export holds one label per "
            "image (use --format csv or jsonl)"
        )
    _prepare(out)
    if format == "csv":
        target = out / INDEX_FILES["csv"]
        with open(target, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            for item, name in _write_images(ws, ds, out / "images"):
                meta = [f"meta:{k}={v}" for k, v in sorted(item.metadata.items())]
                writer.writerow([_CSV_ML_USE[item.split], f"images/{name}", *item.labels, *meta])
    elif format == "jsonl":
        target = out / INDEX_FILES["jsonl"]
        with open(target, "w", encoding="utf-8") as fh:
            for item, name in _write_images(ws, ds, out / "images"):
                row: dict[str, Any] = {"imageGcsUri": f"images/{name}"}
                if ds.multi_label:
                    row["classificationAnnotations"] = [{"displayName": x} for x in item.labels]
                elif item.labels:
                    row["classificationAnnotation"] = {"displayName": item.labels[0]}
                row["dataItemResourceLabels"] = {
                    "aiplatform.googleapis.com/ml_use": _JSONL_ML_USE[item.split]
                }
                if item.metadata:
                    row["metadata"] = dict(item.metadata)
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        target = out
        for item in ds.items:
            folder = out / item.labels[0] if item.labels else out
            folder.mkdir(parents=True, exist_ok=True)
            (folder / file_name(item)).write_bytes(ws.image_bytes(item))
    return {
        "dataset": ds.name,
        "version": ds.version,
        "format": format,
        "images": len(ds.items),
        "path": str(target),
    }
