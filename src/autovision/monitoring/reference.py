"""The drift reference: a model's predictions, embeddings and input statistics on its own test
split, computed once and stored beside its package as ``reference.safetensors`` (no pickle;
encrypted like the package's weights when a key is configured)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autovision.errors import ModelError
from autovision.monitoring.drift import Sample, stats_matrix

REFERENCE_FILE = "reference.safetensors"
_NOT_INPUT_STATS = ("width", "height")  # the importer adds the original size to Item.stats
FORMAT = 1


@dataclass
class Reference:
    """What drift is measured against; ``sample`` holds the arrays."""

    model_id: str
    labels: list[str]
    dataset: str
    split: str
    sample: Sample
    created_at: str

    def __len__(self) -> int:
        return len(self.sample)

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        s = self.sample
        tensors = {"probs": s.probs.astype(np.float32)}
        if s.embeddings is not None:
            tensors["embeddings"] = s.embeddings.astype(np.float32)
        names = sorted(s.stats)
        if names:
            tensors["stats"] = np.stack([s.stats[k] for k in names], 1).astype(np.float32)
        meta = {
            "format": str(FORMAT),
            "model_id": self.model_id,
            "labels": json.dumps(self.labels),
            "dataset": self.dataset,
            "split": self.split,
            "stat_names": json.dumps(names),
            "created_at": self.created_at,
        }
        return save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> Reference:
        from safetensors.numpy import load

        tensors = load(data)
        n = int.from_bytes(data[:8], "little")  # the header: 8-byte length, then JSON
        meta = json.loads(data[8 : 8 + n]).get("__metadata__", {})
        names = json.loads(meta.get("stat_names", "[]"))
        stats = tensors.get("stats")
        sample = Sample(
            tensors["probs"],
            tensors.get("embeddings"),
            {k: stats[:, i] for i, k in enumerate(names)} if stats is not None else {},
        )
        return cls(
            model_id=meta.get("model_id", ""),
            labels=json.loads(meta.get("labels", "[]")),
            dataset=meta.get("dataset", ""),
            split=meta.get("split", "test"),
            sample=sample,
            created_at=meta.get("created_at", ""),
        )

    def save(self, directory: str | Path) -> Path:
        from autovision.models.package import write_model_file

        path = Path(directory) / REFERENCE_FILE
        write_model_file(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Reference:
        from autovision.models.package import read_model_file

        return cls.from_bytes(read_model_file(Path(directory) / REFERENCE_FILE))


def compute_reference(
    ws: Any, model_ref: str, *, split: str = "test", batch_size: int = 32
) -> Reference:
    """Run the model over ``split`` of its own dataset version: probabilities, embeddings
    (when the package exports them) and the items' input statistics (stored at import by
    :func:`autovision.data.quality.analyze`; measured again when missing)."""
    from autovision.data.quality import analyze
    from autovision.models.package import ModelPackage
    from autovision.models.preprocess import preprocess

    info = ws.model(model_ref)
    dv = ws.dataset(f"{info['dataset']}@{info['dataset_version']}")
    items = dv.split(split)
    if not items:
        raise ModelError(f"{dv.ref} has no labelled {split} images: no drift reference")
    pkg = ModelPackage.load(info["path"])
    probs, embs, rows = [], [], []
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        images = [ws.load_image(it) for it in chunk]
        p, e = predict_with_embeddings(pkg, preprocess(images, pkg.preprocessing))
        probs.append(p)
        embs.append(e)
        for it, img in zip(chunk, images, strict=True):
            stats = dict(it.stats or analyze(img))
            rows.append({k: v for k, v in stats.items() if k not in _NOT_INPUT_STATS})
    emb = None if any(e is None for e in embs) else np.concatenate(embs)
    sample = Sample(np.concatenate(probs), emb, stats_matrix(rows))
    return Reference(
        model_id=info["model"],
        labels=list(pkg.labels),
        dataset=dv.ref,
        split=split,
        sample=sample,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def predict_with_embeddings(pkg: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The package's probabilities and embeddings (None from a package without them)."""
    if hasattr(pkg, "predict_with_embeddings"):
        return pkg.predict_with_embeddings(x)
    return pkg.predict_array(x), None


def ensure_reference(ws: Any, model_ref: str, *, recompute: bool = False) -> Reference:
    """The stored reference of a model, computed and stored the first time it is asked for."""
    info = ws.model(model_ref)
    directory = Path(info["path"])
    if not recompute and (directory / REFERENCE_FILE).is_file():
        ref = Reference.load(directory)
        if ref.model_id in ("", info["model"]):
            return ref
    ref = compute_reference(ws, info["model"])
    ref.save(directory)
    return ref
