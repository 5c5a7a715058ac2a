"""The serving fixtures (``make_client`` and the tiny package it serves) of
``tests/serving/conftest.py``, loaded by path so both folders share one definition; and,
for the review tests, ``review_model`` (a registered model ``pets`` whose model.json names
its labels) and ``log_prediction(...)`` (a prediction-log row written directly)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "_monitoring_serving_conftest", Path(__file__).parent.parent / "serving" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
serving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving)

_no_serve_env = serving._no_serve_env
serving_package = serving.serving_package
served_ws = serving.served_ws
make_client = serving.make_client
b64_image = serving.b64_image
MODEL = serving.MODEL
LABELS = serving.LABELS


@pytest.fixture
def review_model(workspace, tmp_path) -> str:
    path = tmp_path / "m-pets-1"
    path.mkdir()
    (path / "model.json").write_text(
        json.dumps({"labels": list(LABELS), "task": "single-label", "thresholds": None})
    )
    workspace.register_model(
        "m-pets-1", dataset="pets", dataset_version=1, task="single-label", path=path, name="pets"
    )
    return "m-pets-1"


@pytest.fixture
def log_prediction(workspace, review_model, image_bytes) -> Callable[..., str]:
    from autovision.workspace.db import PredictionLogRow

    ids = count(1)
    t0 = datetime.now(UTC) - timedelta(hours=1)

    def add(
        probs: tuple[float, ...],
        *,
        key_id: str | None = None,
        request_id: str | None = None,
        image: bool = True,
        seed: int | None = None,
    ) -> str:
        n = next(ids)
        top = sorted(range(len(probs)), key=lambda i: -probs[i])
        sha = None
        if image:
            sha = workspace.blobs.put(image_bytes(top[0], 24, 5000 + (seed if seed else n)))
        pid = f"p-{n:04x}"
        with workspace.Session.begin() as s:
            s.add(
                PredictionLogRow(
                    id=pid,
                    time=t0 + timedelta(seconds=n),
                    request_id=request_id or f"r-{n}",
                    key_id=key_id,
                    name="pets",
                    model_id=review_model,
                    version=1,
                    route="/v1/models/pets:predict",
                    instance=0,
                    probs=list(probs),
                    labels=[LABELS[top[0]]],
                    top_label=LABELS[top[0]],
                    confidence=probs[top[0]],
                    margin=probs[top[0]] - probs[top[1]],
                    width=24,
                    height=24,
                    image_sha256=sha,
                )
            )
        return pid

    return add


# ---- drift: a workspace with a dataset and a tiny package registered on it ----

DRIFT_MODEL = "m-drift"


@pytest.fixture(scope="session")
def tiny_package(serving_package: Path) -> Path:
    """The serving tests' package (compact CNN, 3 labels, seed 0); copied before it is changed."""
    return serving_package


@pytest.fixture
def monitored_ws(workspace, image_folder, tiny_package: Path):
    from autovision.data.importer import import_dataset

    source = image_folder(LABELS, per_label=30)
    # workers=1: no fork after ONNX Runtime threads exist in this process (a fork can hang)
    import_dataset(workspace, "toy", source, split=(0.2, 0.1, 0.7), workers=1)
    path = workspace.models_dir / DRIFT_MODEL
    shutil.copytree(tiny_package, path)
    workspace.register_model(
        DRIFT_MODEL, dataset="toy", dataset_version=1, task="single-label", path=path, name="toy"
    )
    return workspace


@pytest.fixture
def records(tiny_package: Path) -> Callable[..., list[dict]]:
    from autovision.data.quality import analyze as input_stats
    from autovision.models.package import ModelPackage
    from autovision.models.preprocess import preprocess

    pkg = ModelPackage.load(tiny_package)

    def make(images, time: datetime | None = None) -> list[dict]:
        probs, emb = pkg.predict_with_embeddings(preprocess(images, pkg.preprocessing))
        when = (time or datetime.now(UTC)).isoformat()
        return [
            {
                "time": when,
                "model_id": DRIFT_MODEL,
                "probs": p.tolist(),
                "embedding": e.tolist(),
                "stats": input_stats(img),
            }
            for p, e, img in zip(probs, emb, images, strict=True)
        ]

    return make
