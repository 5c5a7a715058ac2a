"""End to end: tiny generated datasets trained in seconds with a restricted search space."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.errors import ModelError, TrainingError
from autovision.models.package import ModelPackage
from autovision.search import train
from autovision.search.modes import BaseModel, build_model

KEYS = {
    "model",
    "name",
    "version",
    "dataset",
    "dataset_version",
    "task",
    "validation",
    "best",
    "trials",
    "stop_reason",
    "seconds",
    "excluded",
    "ensemble",
    "ranking",
}


def test_trials_end_to_end(workspace, make_dataset, tiny_space, assert_no_pickle) -> None:
    make_dataset(labels=("a", "b", "c"), counts=(12, 4, 4))
    events: list[dict] = []
    result = train(workspace, "tiny", trials=2, progress=events.append)
    d = result.to_dict()
    assert set(d) == KEYS
    assert d["stop_reason"] == "TRIALS_DONE" and d["trials"] == 2
    assert d["dataset"] == "tiny" and d["dataset_version"] == 1 and d["task"] == "single-label"
    assert (d["name"], d["version"]) == ("tiny", 1)  # named after the dataset by default
    assert d["best"]["backbone"] == "compact_cnn" and d["best"]["mode"] == "scratch"
    assert 0.0 <= d["validation"]["accuracy"] <= 1.0 and d["validation"]["images"] == 12
    assert {e["event"] for e in events} >= {
        "search_start",
        "trial_start",
        "epoch",
        "trial_end",
        "done",
    }

    # registered, with what `models show` lists
    info = workspace.model(d["model"])
    assert Path(info["path"]) == result.path and info["stop_reason"] == "TRIALS_DONE"
    assert info["validation"] == d["validation"] and info["best"] == d["best"]

    # the package: everything model.json must say, no pickle, ONNX == PyTorch
    meta = json.loads((result.path / "model.json").read_text())
    for key in (
        "labels",
        "task",
        "thresholds",
        "architecture",
        "preprocessing",
        "hyperparameters",
        "dataset",
        "validation",
        "training_seconds",
        "seed",
        "stop_reason",
        "library_versions",
    ):
        assert key in meta, key
    assert meta["dataset"]["content_hash"] == workspace.dataset("tiny").content_hash
    assert meta["preprocessing"]["input_size"] == 16
    assert_no_pickle(result.path)
    assert_no_pickle(workspace.root / "runs")
    pkg = ModelPackage.load(result.path)
    ds = workspace.dataset("tiny")
    images = [workspace.load_image(it) for it in ds.split("validation")]
    probs = pkg.predict_proba(images)
    from autovision.models.preprocess import preprocess

    with torch.no_grad():
        ref = torch.softmax(
            pkg.torch_model()(torch.from_numpy(preprocess(images, pkg.preprocessing))), 1
        )
    assert np.abs(probs - ref.numpy()).max() < 1e-4
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_test_split_is_never_read(workspace, make_dataset, tiny_space, monkeypatch) -> None:
    ds = make_dataset(labels=("a", "b"), counts=(8, 3, 5))
    test_shas = {it.sha256 for it in ds.split("test")}
    read: list[str] = []
    original = type(workspace.blobs).get

    def spy(self, sha: str) -> bytes:
        read.append(sha)
        return original(self, sha)

    monkeypatch.setattr(type(workspace.blobs), "get", spy)
    train(workspace, "tiny", trials=1)
    assert read, "the spy saw no reads"
    assert not test_shas & set(read)
    assert set(read) <= {it.sha256 for it in ds.items if it.split in ("train", "validation")}


def test_one_label_is_a_clear_error(workspace, make_dataset, tiny_space) -> None:
    make_dataset(labels=("cat",), counts=(5, 2, 2))
    with pytest.raises(TrainingError, match="at least 2 labels"):
        train(workspace, "tiny", trials=1)
    assert not (workspace.root / "runs").exists()


def test_multi_label(workspace, make_dataset, tiny_space) -> None:
    make_dataset(labels=("a", "b", "c"), counts=(9, 4, 2), multi_label=True)
    result = train(workspace, "tiny", trials=1)
    assert result.task == "multi-label"
    assert {"f1_micro", "f1_macro", "mean_average_precision"} <= set(result.validation)
    pkg = ModelPackage.load(result.path)
    assert pkg.task == "multi-label" and len(pkg.thresholds) == 3
    assert all(0.0 < t < 1.0 for t in pkg.thresholds)
    probs = pkg.predict_proba(
        [workspace.load_image(workspace.dataset("tiny").split("validation")[0])]
    )
    assert probs.shape == (1, 3) and not np.allclose(probs.sum(1), 1.0)


@pytest.mark.slow
def test_base_model(workspace, make_dataset, tiny_space) -> None:
    make_dataset(name="v", labels=("a", "b"), counts=(8, 3, 2))
    first = train(workspace, "v", trials=1)
    ds = make_dataset(name="v", labels=("a", "b", "c"), counts=(8, 3, 2), seed=1)
    assert ds.version == 2

    base = BaseModel.load(first.model, first.path)
    model = build_model("compact_cnn", ["a", "b", "c"], base=base)
    head = model.classifier.weight.detach()
    assert torch.equal(head[:2], base.state["classifier.weight"])
    assert torch.equal(model.features[0][0].weight, base.state["features.0.0.weight"])

    second = train(workspace, "v@2", trials=1, base_model=first.model)
    meta = json.loads((second.path / "model.json").read_text())
    assert meta["base_model"] == first.model and meta["labels"] == ["a", "b", "c"]
    assert second.best["mode"] in ("finetune_top", "finetune_full", "linear")
    assert workspace.model(second.model)["base_model"] == first.model


@pytest.mark.slow
def test_reproducible_for_a_seed(tmp_path, make_dataset, tiny_space) -> None:
    from autovision.workspace import Workspace

    outs = []
    for i in range(2):
        ws = Workspace(tmp_path / f"w{i}")
        make_dataset(labels=("a", "b", "c"), counts=(10, 4, 0), ws=ws)
        outs.append(train(ws, "tiny", trials=2, seed=3).to_dict())
    assert outs[0]["best"] == outs[1]["best"]
    for k, v in outs[0]["validation"].items():
        assert abs(v - outs[1]["validation"][k]) < 1e-6, k


@pytest.mark.slow
def test_budget_is_kept(workspace, make_dataset, tiny_space) -> None:
    make_dataset(labels=("a", "b", "c"), counts=(40, 5, 0))
    t = time.monotonic()
    result = train(workspace, "tiny", budget="12s")
    wall = time.monotonic() - t
    assert result.stop_reason in ("BUDGET_REACHED", "MODEL_CONVERGED")
    assert result.seconds <= 12 * 1.1, result.seconds
    assert wall <= 12 * 1.1 + 1.0  # the accounting starts when train() is called
    assert result.trials >= 2


@pytest.mark.slow
def test_linear_head_on_pretrained_features(workspace, make_dataset, monkeypatch) -> None:
    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["linear"],
        "sizes": {"efficientnet_lite0": [32]},
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    make_dataset(labels=("a", "b"), counts=(8, 4, 2), size=32)
    result = train(workspace, "tiny", trials=1)
    assert result.best["mode"] == "linear" and result.best["backbone"] == "efficientnet_lite0"
    assert "l2" in result.best and "lr" not in result.best
    assert result.best["refit"]["images"] == 16 + 8  # the head refit on both splits
    assert list((workspace.cache_dir / "embeddings").glob("*.npy"))
    pkg = ModelPackage.load(result.path)
    probs = pkg.predict_proba(
        [workspace.load_image(it) for it in workspace.dataset("tiny").split("validation")]
    )
    assert (probs.argmax(1) == [0] * 4 + [1] * 4).mean() == pytest.approx(
        result.validation["accuracy"]
    )


def test_the_package_is_the_chosen_trial_refit_on_training_and_validation_images(
    workspace, make_dataset, tiny_space
) -> None:
    """The chosen trial's training is replayed on both splits up to its best epoch; the
    validation figures reported are the trial's (validation no longer
    measures the refit)."""
    ds = make_dataset(labels=("a", "b", "c"), counts=(12, 4, 4))
    events: list[dict] = []
    # the chosen trial alone (an ensemble or flips would change the figures)
    alone = {"ensemble": "off", "tta": "off"}
    result = train(workspace, "tiny", trials=2, progress=events.append, **alone)
    n_images = len(ds.split("train")) + len(ds.split("validation"))
    refit = result.best["refit"]
    assert refit["trial"] == result.best["trial"] and refit["images"] == n_images
    starts = [e for e in events if e["event"] == "trial_start"]
    assert starts[-1]["phase"] == "refit" and starts[-1]["n_train"] == n_images
    assert starts[-1]["epochs"] == refit["epochs"] <= result.best["epochs"]
    ends = {e["trial"]: e for e in events if e["event"] == "trial_end"}
    assert ends[f"{refit['trial']}r"]["state"] == "REFIT"
    assert result.validation["accuracy"] == pytest.approx(ends[refit["trial"]]["score"])
    meta = json.loads((result.path / "model.json").read_text())
    assert f"refit on {n_images} training + validation images" in meta["validation_of"]


def test_the_package_holds_the_refit_weights_and_a_timed_refit_keeps_the_budget(
    workspace, make_dataset, tiny_space, monkeypatch
) -> None:
    from autovision.search import run as run_mod
    from autovision.search.trainer import load_checkpoint

    kept: list[Path] = []
    # nothing removed (the module is shared: the search keeps its trial folders too)
    monkeypatch.setattr(run_mod.shutil, "rmtree", lambda p, **kw: kept.append(Path(p)))
    make_dataset(labels=("a", "b"), counts=(12, 4, 0))
    result = train(workspace, "tiny", budget="15s", ensemble="off", tta="off")
    assert result.seconds <= 15 * 1.1, result.seconds
    assert result.best["refit"] is not None
    trials = kept[-1]  # the export removes the trials folder last
    refit_weights = load_checkpoint(trials / "refit")[0]
    trial_weights = load_checkpoint(trials / f"{result.best['trial']:04d}")[0]
    package = ModelPackage.load(result.path).torch_model().state_dict()
    assert all(torch.equal(package[k], v) for k, v in refit_weights.items())
    assert not all(torch.equal(package[k], v) for k, v in trial_weights.items())


def test_a_refit_that_does_not_fit_the_time_left_is_skipped(
    workspace, make_dataset, tiny_space, monkeypatch
) -> None:
    """No time for the refit: the package holds the chosen trial's own weights, which give
    the validation figures reported."""
    from autovision.search.planner import Planner

    monkeypatch.setattr(Planner, "refit_seconds", lambda self, cfg, epochs: 1e9)
    make_dataset(labels=("a", "b"), counts=(12, 4, 0))
    events: list[dict] = []
    result = train(workspace, "tiny", budget="20s", progress=events.append)
    assert result.best["refit"] is None
    assert [e for e in events if e["event"] == "refit_skipped"]
    assert not [e for e in events if e.get("phase") == "refit"]
    pkg = ModelPackage.load(result.path)
    probs = pkg.predict_proba(
        [workspace.load_image(it) for it in workspace.dataset("tiny").split("validation")]
    )
    y = [0] * 4 + [1] * 4
    assert (probs.argmax(1) == y).mean() == pytest.approx(result.validation["accuracy"])


def test_a_trial_that_cannot_build_its_model_fails_alone(
    workspace, make_dataset, tiny_space, monkeypatch
) -> None:
    """A backbone that cannot be built (here: its weights package 'missing') fails its trial;
    the search goes on with the next one (seen on a machine without Lite1's weights)."""
    from autovision.search import modes

    real, calls = modes.create_model, []

    def first_fails(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise ModelError("pretrained weights for x need the PyPI package x")
        return real(*a, **kw)

    monkeypatch.setattr(modes, "create_model", first_fails)
    make_dataset()
    ends: list[dict] = []
    result = train(
        workspace, "tiny", trials=2, progress=lambda e: e["event"] == "trial_end" and ends.append(e)
    )
    assert ends[0]["state"] == "FAIL" and "weights" in ends[0]["error"]
    assert result.trials == 2 and result.model


def test_when_no_trial_can_build_its_model_the_search_ends_with_the_error(
    workspace, make_dataset, tiny_space, monkeypatch
) -> None:
    from autovision.search import modes

    def never(*a, **kw):
        raise ModelError("pretrained weights for x need the PyPI package x")

    monkeypatch.setattr(modes, "create_model", never)
    make_dataset()
    with pytest.raises(TrainingError, match="no trial finished.*PyPI package"):
        train(workspace, "tiny", trials=2)
