"""Predictions of a model over a dataset split, and the files they are exported to.

One row per image: ``{"id", "source", "true_labels", "predicted_labels", "probabilities"}``
with ``probabilities`` as ``{label: p}`` in the model's label order.

- ``.jsonl``: one JSON object per line, exactly the row.
- ``.csv``: columns ``id, source, true_labels, predicted_labels`` then one column per label
  named ``p:LABEL``; label lists are joined with ``|`` (``LIST_SEP``). Probabilities are
  written with full float precision (``repr``), so metrics recomputed from either file
  equal those of ``autovision evaluate``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autovision.data.dataset import SPLITS, DatasetVersion, Item
from autovision.errors import AutovisionError, DatasetError, ModelError

LIST_SEP = "|"
PROB_PREFIX = "p:"
FORMATS = (".jsonl", ".csv")
Progress = Callable[[int, int], None]


@dataclass
class SplitPredictions:
    """A model's probabilities on the labelled items of one split of a dataset version."""

    model_id: str
    dataset: DatasetVersion
    split: str
    labels: list[str]
    task: str
    thresholds: list[float] | None
    items: list[Item]
    probs: np.ndarray
    predicted: list[list[int]]
    notes: list[str]

    @property
    def true_labels(self) -> list[tuple[str, ...]]:
        return [it.labels for it in self.items]

    @property
    def ids(self) -> list[int]:
        return [it.id for it in self.items]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": it.id,
                "source": it.source,
                "true_labels": list(it.labels),
                "predicted_labels": [self.labels[j] for j in pred],
                "probabilities": {lab: float(p) for lab, p in zip(self.labels, probs, strict=True)},
            }
            for it, probs, pred in zip(self.items, self.probs, self.predicted, strict=True)
        ]


def load_package(path: str | os.PathLike[str]) -> Any:  # -> ModelPackage
    from autovision.models.package import ModelPackage

    return ModelPackage.load(path)


def resolve_dataset(ws: Any, model_info: dict[str, Any], dataset: str | None) -> DatasetVersion:
    """The model's own dataset version by default, else ``NAME`` (latest) or ``NAME@N``."""
    if dataset is None:
        if not model_info.get("dataset"):
            raise ModelError(f"model {model_info['model']!r} records no dataset; pass --dataset")
        return ws.dataset(f"{model_info['dataset']}@{model_info['dataset_version']}")
    return ws.dataset(dataset)


def check_compatible(ds: DatasetVersion, package: Any, model_id: str) -> list[str]:
    """Refuse a dataset whose labels or task the model cannot handle; notes for the rest."""
    unknown = [lab for lab in ds.labels if lab not in set(package.labels)]
    if unknown:
        raise DatasetError(
            f"dataset {ds.ref} has labels the model {model_id!r} does not know: "
            f"{', '.join(unknown)} (model labels: {', '.join(package.labels)})"
        )
    if package.task == "single-label" and any(len(it.labels) > 1 for it in ds.items):
        raise ModelError(
            f"model {model_id!r} is single-label but dataset {ds.ref} has images with "
            "several labels"
        )
    missing = [lab for lab in package.labels if lab not in set(ds.labels)]
    if missing:
        return [f"model labels not in dataset {ds.ref}: {', '.join(missing)}"]
    return []


def predict_items(
    ws: Any,
    package: Any,
    items: Sequence[Item],
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> np.ndarray:
    """Probabilities [N, L], loading and predicting one batch of images at a time."""
    out = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        probs = np.asarray(package.predict_proba([ws.load_image(it) for it in batch]))
        if probs.shape != (len(batch), len(package.labels)):
            raise ModelError(
                f"model returned probabilities of shape {probs.shape}, "
                f"expected {(len(batch), len(package.labels))}"
            )
        out.append(probs)
        if progress is not None:
            progress(start + len(batch), len(items))
    return np.concatenate(out) if out else np.zeros((0, len(package.labels)), dtype=np.float32)


def predict_split(
    ws: Any,
    model_id: str,
    *,
    split: str = "test",
    dataset: str | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> SplitPredictions:
    """Run a registered model over the labelled items of one split of a dataset version."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    info = ws.model(model_id)
    model_id = info["model"]  # the concrete id behind a version reference
    package = load_package(info["path"])
    ds = resolve_dataset(ws, info, dataset)
    notes = check_compatible(ds, package, model_id)
    items = ds.split(split)
    if not items:
        raise DatasetError(f"dataset {ds.ref} has no labelled images in the {split!r} split")
    probs = predict_items(ws, package, items, batch_size=batch_size, progress=progress)
    return SplitPredictions(
        model_id=model_id,
        dataset=ds,
        split=split,
        labels=list(package.labels),
        task=package.task,
        thresholds=list(package.thresholds) if package.thresholds is not None else None,
        items=list(items),
        probs=probs,
        predicted=[[int(j) for j in row] for row in package.decide(probs)],
        notes=notes,
    )


def write_predictions(
    rows: Sequence[dict[str, Any]], labels: Sequence[str], output: str | os.PathLike[str]
) -> int:
    """Write rows as ``.jsonl`` or ``.csv`` (chosen by the extension); returns rows written."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise AutovisionError(
            f"{path}: unsupported predictions format {suffix or '(none)'!r}; "
            f"use {' or '.join(FORMATS)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        if suffix == ".jsonl":
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        else:
            writer = csv.writer(fh)
            writer.writerow(
                ["id", "source", "true_labels", "predicted_labels"]
                + [PROB_PREFIX + lab for lab in labels]
            )
            for row in rows:
                writer.writerow(
                    [
                        row["id"],
                        row["source"],
                        LIST_SEP.join(row["true_labels"]),
                        LIST_SEP.join(row["predicted_labels"]),
                    ]
                    + [repr(float(row["probabilities"][lab])) for lab in labels]
                )
    os.replace(tmp, path)
    return len(rows)


def read_predictions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a file written by :func:`write_predictions` back into rows."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in fh if line.strip()]
        rows = []
        for rec in csv.DictReader(fh):
            rows.append(
                {
                    "id": int(rec["id"]),
                    "source": rec["source"],
                    "true_labels": _split_list(rec["true_labels"]),
                    "predicted_labels": _split_list(rec["predicted_labels"]),
                    "probabilities": {
                        k[len(PROB_PREFIX) :]: float(v)
                        for k, v in rec.items()
                        if k.startswith(PROB_PREFIX)
                    },
                }
            )
        return rows


def write_split_predictions(
    ws: Any,
    model_id: str,
    output: str | os.PathLike[str],
    *,
    split: str = "test",
    dataset: str | None = None,
) -> int:
    """Predict one split (the model's own dataset version by default) into ``output``."""
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise AutovisionError(
            f"{output}: unsupported predictions format {suffix or '(none)'!r}; "
            f"use {' or '.join(FORMATS)}"
        )
    preds = predict_split(ws, model_id, split=split, dataset=dataset)
    return write_predictions(preds.rows(), preds.labels, output)


def _split_list(cell: str) -> list[str]:
    return cell.split(LIST_SEP) if cell else []
