"""The search's last step: an ensemble and/or flips packaged as one model, within the
inference-cost bound; the best trials' checkpoints kept for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from autovision.errors import TrainingError
from autovision.models.ensemble import CombinedModel
from autovision.models.package import ModelPackage
from autovision.search import ensemble as selection
from autovision.search import train
from autovision.search.combine import Settings, keep_best_folders


@pytest.fixture
def forced_mix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selection keeps a mix of its first two candidates when the real one keeps none (tiny
    models trained for seconds rarely beat each other by the margin)."""
    real = selection.select

    def select(task, y, probs, **kw):
        sel = real(task, y, probs, **kw)
        if sel.kept or len(probs) < 2:
            return sel
        mixed = selection.measure(task, y, selection.mix(probs, [0, 1], [2 / 3, 1 / 3]))
        return selection.Selection(
            members=[0, 1],
            counts=[2, 1],
            weights=[2 / 3, 1 / 3],
            score=mixed[0],
            loss=mixed[1],
            single=sel.single,
            single_score=mixed[0] - 0.1,  # so that dropping members re-checks against it
            single_loss=sel.single_loss,
            kept=True,
            why="forced by the test",
        )

    monkeypatch.setattr(selection, "select", select)


def _images(ws, split: str = "validation") -> list:
    return [ws.load_image(it) for it in ws.dataset("tiny").split(split)]


@pytest.mark.slow
def test_an_ensemble_package_is_served_like_any_other(
    workspace, make_dataset, tiny_space, forced_mix, assert_no_pickle
) -> None:
    make_dataset(labels=("a", "b", "c"), counts=(12, 4, 4))
    # two members with flips: about 4x the chosen trial's time (a loose bound: a shared
    # machine makes timings noisy)
    # the two defaults (same input; a drawn third may pad, and win a tie on log loss)
    result = train(workspace, "tiny", trials=2, max_inference_cost=10.0)
    ens = result.to_dict()["ensemble"]
    assert ens["kept"], json.dumps(ens)
    assert len(ens["members"]) == 2 and len(ens["candidates"]) >= 2
    assert sum(m["weight"] for m in ens["members"]) == pytest.approx(1.0)
    assert ens["tta"]["why"] and isinstance(ens["tta"]["enabled"], bool)
    cost = ens["inference_cost"]
    assert 1.0 < cost["ratio"] <= 10.0 * 1.1 and cost["max"] == 10.0
    meta = json.loads((result.path / "model.json").read_text())
    assert meta["ensemble"]["kept"] and meta["tta"] == ens["tta"]
    assert meta["inference_cost"] == cost
    arch = meta["architecture"]["ensemble"]
    assert [m["trial"] for m in arch["members"]] == [m["trial"] for m in ens["members"]]
    assert arch["tta"] == ens["tta"]["enabled"]
    assert "weighted ensemble of trials" in meta["validation_of"]
    assert_no_pickle(result.path)

    pkg = ModelPackage.load(result.path)
    images = _images(workspace, "test")[:5]
    probs = pkg.predict_proba(images)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert len(pkg.decide(probs)) == 5
    probs_e, emb = pkg.predict_with_embeddings(np.stack([np.zeros((3, 16, 16), np.float32)] * 2))
    assert emb is not None and emb.shape[0] == 2
    model = pkg.torch_model()  # rebuilt from weights.safetensors: the same outputs
    assert isinstance(model, CombinedModel)
    from autovision.models.preprocess import preprocess

    x = preprocess(images, pkg.preprocessing)
    with torch.no_grad():
        again = torch.softmax(model(torch.from_numpy(x)), -1).numpy()
    np.testing.assert_allclose(again, probs, atol=1e-5)
    info = workspace.model(result.model)
    assert info["ensemble"]["kept"]
    # as a base model (--base-model): its first member, a plain model of the same labels
    from autovision.search.modes import BaseModel

    base = BaseModel.load(result.model, result.path)
    first = ens["members"][0]
    assert base.backbone == first["backbone"] and "classifier.weight" in base.state
    assert base.labels == ["a", "b", "c"]


@pytest.mark.slow
def test_a_half_cost_bound_falls_back_to_the_single_model(
    workspace, make_dataset, tiny_space, forced_mix
) -> None:
    make_dataset(labels=("a", "b", "c"), counts=(12, 4, 4))
    result = train(workspace, "tiny", trials=3, max_inference_cost=0.5)
    ens = result.ensemble
    assert ens is not None and not ens["kept"] and len(ens["members"]) == 1
    assert ens["members"][0]["trial"] == result.best["trial"]
    assert "max-inference-cost" in ens["why"]
    assert not ens["tta"]["enabled"]
    assert ens["inference_cost"]["dropped"] and ens["inference_cost"]["ratio"] == 1.0
    meta = json.loads((result.path / "model.json").read_text())
    assert "ensemble" not in meta["architecture"]
    assert not isinstance(ModelPackage.load(result.path).torch_model(), CombinedModel)


def test_off_is_the_chosen_trial_alone(workspace, make_dataset, tiny_space) -> None:
    make_dataset(labels=("a", "b"), counts=(10, 4, 0))
    result = train(workspace, "tiny", trials=2, ensemble="off", tta="off")
    ens = result.ensemble
    assert ens is not None and not ens["kept"] and "--ensemble off" in ens["why"]
    assert not ens["tta"]["enabled"] and "--tta off" in ens["tta"]["why"]
    meta = json.loads((result.path / "model.json").read_text())
    assert "ensemble" not in meta["architecture"]
    assert meta["search"]["settings"] == {
        "ensemble": "off",
        "tta": "off",
        "max_inference_cost": 2.0,
    }


def test_settings_are_checked() -> None:
    with pytest.raises(TrainingError, match="--ensemble must be one of auto, off"):
        Settings(ensemble="on")
    with pytest.raises(TrainingError, match="--tta"):
        Settings(tta="yes")
    with pytest.raises(TrainingError, match="--max-inference-cost"):
        Settings(max_inference_cost=0)
    assert Settings().keep > 1 and Settings(ensemble="off").keep == 1


def test_the_best_trials_keep_their_checkpoints(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7, 0.9, 0.6):
        trial = study.ask()
        (tmp_path / str(trial.number)).mkdir()
        study.tell(trial, value)
    keep_best_folders(study, lambda n: tmp_path / str(n), 3)
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == [1, 2, 3]
    keep_best_folders(study, lambda n: tmp_path / str(n), 1)
    assert [p.name for p in tmp_path.iterdir()] == ["1"]  # the study's best, the first 0.9


@pytest.mark.slow
def test_linear_heads_on_one_backbone_share_it_in_the_graph(
    workspace, make_dataset, monkeypatch, forced_mix
) -> None:
    import onnx

    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["linear"],
        "sizes": {"efficientnet_lite0": [32]},
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    make_dataset(labels=("a", "b"), counts=(8, 4, 2), size=32)
    result = train(workspace, "tiny", trials=6, tta="off")  # squashed and padded heads
    ens = result.ensemble
    assert ens is not None and ens["kept"], json.dumps(ens)
    assert {m["mode"] for m in ens["members"]} == {"linear"}
    arch = json.loads((result.path / "model.json").read_text())["architecture"]["ensemble"]
    assert len(arch["groups"]) == 1 and {m["group"] for m in arch["members"]} == {0}
    assert ens["inference_cost"]["ratio"] < 1.5  # one backbone pass, two heads
    pkg = ModelPackage.load(result.path)
    graph = onnx.load_from_string(pkg.onnx_bytes()).graph
    assert sum(n.op_type == "Gemm" for n in graph.node) == len(ens["members"])
    probs = pkg.predict_proba(_images(workspace, "test"))
    assert probs.shape == (4, 2)
