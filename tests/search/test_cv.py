"""Cross-validated ranking: the folds separate two configurations a small validation split
ties, the study is told the CV mean, the refit runs the rounds CV chose, ``--cv off`` ranks
on validation as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autovision.data.dataset import Item
from autovision.errors import TrainingError
from autovision.search import metrics
from autovision.search.cv import MIN_VAL_PER_LABEL, CVSettings, Ranking, best_round, summary
from autovision.search.linear import LogisticHead
from autovision.search.prepare import DataProfile, TrainData
from autovision.search.space import TrialConfig
from autovision.search.trainer import Runtime, TrialOutcome, TrialPlan

DIM, N_TRAIN, N_VAL, SHIFT = 100, 60, 3, 0.2


def _item(i: int, label: str, split: str) -> Item:
    return Item(
        id=i,
        sha256=f"{i:064x}",
        source=f"{label}/{i}.png",
        labels=(label,),
        split=split,
        width=8,
        height=8,
        format="PNG",
    )


@pytest.fixture(scope="module")
def features() -> tuple[Runtime, np.ndarray]:
    """Two labels, 100 dimensions that each shift a little with the label, 15% of the
    training labels flipped, and 3 validation images per label far from the boundary: any
    head scores them 1.0, while on the training images a firm L2 penalty beats a loose one
    (the loose head learns the noise)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y_tr, y_val = np.tile([0, 1], N_TRAIN // 2), np.tile([0, 1], N_VAL)

    def feats(y: np.ndarray, shift: float) -> np.ndarray:
        return (rng.normal(0, 1, (len(y), DIM)) + (2 * y[:, None] - 1) * shift).astype(np.float32)

    x_val, x_tr = feats(y_val, 10 * SHIFT), feats(y_tr, SHIFT)
    flip = rng.random(N_TRAIN) < 0.15
    y_tr[flip] = 1 - y_tr[flip]
    train = [_item(100 + i, "ab"[y], "train") for i, y in enumerate(y_tr)]
    val = [_item(i, "ab"[y], "validation") for i, y in enumerate(y_val)]
    data = TrainData(
        dataset=None,
        task="single-label",
        labels=["a", "b"],
        train=train,
        val=val,
        y_train=y_tr,
        y_val=y_val,
        order=np.arange(N_TRAIN),
        val_select=np.arange(len(val)),
        profile=DataProfile(N_TRAIN, len(val), 2, 8, False, 1.0),
        label_counts={"a": int((y_tr == 0).sum()), "b": int((y_tr == 1).sum())},
    )
    rt = Runtime(ws=None, data=data, device=torch.device("cpu"))
    return rt, np.concatenate([x_val, x_tr])


LOOSE = TrialConfig("efficientnet_lite0", "linear", 224, l2=1e-5)
FIRM = TrialConfig("efficientnet_lite0", "linear", 224, l2=10.0)


def _validation_score(rt: Runtime, x: np.ndarray, cfg: TrialConfig) -> float:
    """What the search ranked by before: the head fitted on training, scored on validation."""
    n_val = len(rt.data.val)
    head = LogisticHead(
        torch.from_numpy(x[n_val:]), torch.from_numpy(rt.data.y_train), rt.data, cfg
    )
    for _ in range(6):
        head.step()
    z = head.standardise(torch.from_numpy(x[:n_val]))
    probs = torch.softmax(head.lin(z), 1).detach().numpy()
    return metrics.evaluate("single-label", rt.data.y_val, probs)[0]


def test_folds_separate_configurations_the_validation_split_ties(features) -> None:
    rt, x = features
    assert _validation_score(rt, x, LOOSE) == _validation_score(rt, x, FIRM) == 1.0
    ranking = Ranking(rt, CVSettings("auto"), seed=0)
    assert ranking.active  # 3 validation images per label
    loose = ranking.cross_validate(LOOSE, N_TRAIN, steps=150, x=x)
    firm = ranking.cross_validate(FIRM, N_TRAIN, steps=150, x=x)
    assert firm.mean > loose.mean + 0.1, (firm.to_dict(), loose.to_dict())
    assert firm.folds == 5 and firm.repeats == 3 and len(firm.scores) == 15
    assert firm.images == N_TRAIN + 2 * N_VAL and 0 < firm.sd < 0.3
    d = firm.to_dict()
    assert {"mean", "sd", "folds", "repeats", "rounds", "loss_mean"} <= set(d)
    again = ranking.cross_validate(FIRM, N_TRAIN, steps=150, x=x)
    assert again.scores == firm.scores  # the same folds for every configuration


def test_rescore_tells_the_cv_mean_and_the_rounds_it_chose(features, monkeypatch) -> None:
    rt, x = features
    ranking = Ranking(rt, CVSettings("on", folds=3), seed=0)
    monkeypatch.setattr(ranking, "embeddings", lambda cfg, n: x[: len(rt.data.val) + n])
    out = TrialOutcome(1.0, {"accuracy": 1.0}, None, 6, 6, 0.5, "done")
    plan = TrialPlan(n_train=N_TRAIN, epochs=1)
    new = ranking.rescore(FIRM, plan, out, steps=150)
    assert new is not out and new.score == pytest.approx(new.ranking["mean"]) and new.score < 1
    assert new.ranking["validation"] == 1.0 and new.ranking["folds"] == 3
    assert new.best_epoch == new.ranking["rounds"]  # the refit replays the CV's rounds
    assert "cv_s" in new.timings and new.seconds > out.seconds
    refit = TrialPlan(n_train=N_TRAIN, epochs=2, refit=True)
    assert ranking.rescore(FIRM, refit, out, steps=150) is out  # a refit is not ranked
    image = FIRM.with_(mode="finetune_full")
    assert ranking.rescore(image, plan, out, steps=150) is out  # image trials: validation

    def missing(cfg, n):
        raise TrainingError("cross-validation: no embeddings")

    monkeypatch.setattr(ranking, "embeddings", missing)
    failed = ranking.rescore(FIRM, plan, out, steps=150)  # validation ranks it then
    assert failed.score == 1.0 and "no embeddings" in failed.ranking["error"]
    assert summary(ranking, [_trial(0, 1.0, failed.ranking)])["trials"][0]["measure"] == (
        "validation"
    )
    off = Ranking(rt, CVSettings("off"))
    assert not off.active and off.rescore(FIRM, plan, out, steps=150) is out
    assert off.describe()["measure"] == "validation"


def _trial(number: int, value: float, ranking: dict | None) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(number=number, value=value, user_attrs={"ranking": ranking})


def test_auto_ranks_by_cv_only_when_validation_is_small(features) -> None:
    rt, _ = features
    assert Ranking(rt, CVSettings("auto")).describe()["measure"] == "cv"
    big = np.tile([0, 1], MIN_VAL_PER_LABEL)
    data = TrainData(**{**rt.data.__dict__, "y_val": big})
    auto = Ranking(Runtime(ws=None, data=data, device=rt.device), CVSettings("auto"))
    assert not auto.active and str(MIN_VAL_PER_LABEL) in auto.why
    with pytest.raises(TrainingError, match="--cv-folds"):
        CVSettings(folds=1)
    with pytest.raises(TrainingError, match="--cv"):
        CVSettings(mode="sometimes")
    assert CVSettings.from_dict({"mode": "on", "folds": 3}).folds == 3


def test_best_round_breaks_ties_by_log_loss() -> None:
    scores = np.array([[1.0, 1.0, 0.9], [1.0, 1.0, 1.0]])
    losses = np.array([[0.5, 0.2, 0.1], [0.5, 0.3, 0.1]])
    assert best_round(scores, losses) == 1


def test_summary_reports_each_trials_mean_and_spread(features) -> None:
    from types import SimpleNamespace

    rt, _ = features
    cv = {"mean": 0.8, "sd": 0.05, "folds": 5, "repeats": 2, "rounds": 3, "validation": 1.0}
    trials = [
        SimpleNamespace(number=0, value=0.8, user_attrs={"ranking": cv, "config": {}}),
        SimpleNamespace(number=1, value=0.7, user_attrs={"config": {"mode": "finetune_top"}}),
        SimpleNamespace(number=2, value=None, user_attrs={}),
    ]
    out = summary(Ranking(rt, CVSettings("on")), trials)
    assert out["measure"] == "cv" and out["folds"] == 5
    assert json.loads(json.dumps(out))["trials"] == [
        {
            "trial": 0,
            "mode": None,
            "measure": "cv",
            "mean": 0.8,
            "sd": 0.05,
            "folds": 5,
            "repeats": 2,
            "rounds": 3,
            "loss_mean": None,
            "validation": 1.0,
            "seconds": None,
        },
        {"trial": 1, "mode": "finetune_top", "measure": "validation", "mean": 0.7, "sd": None},
    ]


@pytest.mark.slow
def test_train_ranks_linear_trials_by_cv_and_refits_with_its_rounds(
    workspace, make_dataset, monkeypatch
) -> None:
    from autovision.search import study as studies
    from autovision.search.run import train
    from autovision.search.state import RunState

    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["linear"],
        "sizes": {"efficientnet_lite0": [32]},
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    make_dataset(labels=("a", "b"), counts=(8, 4, 2), size=32)
    events: list[dict] = []
    result = train(workspace, "tiny", trials=2, cv_folds=3, progress=events.append)
    ranking = result.to_dict()["ranking"]
    assert ranking["measure"] == "cv" and ranking["cv"] == "auto" and ranking["folds"] == 3
    rows = ranking["trials"]
    assert len(rows) == 2 and all(r["measure"] == "cv" and r["folds"] == 3 for r in rows)
    assert all(r["sd"] is not None and 0 <= r["mean"] <= 1 for r in rows)
    ends = [e for e in events if e["event"] == "trial_end" and e.get("state") == "COMPLETE"]
    # the study's value
    assert all(e["ranking"]["mean"] == pytest.approx(e["score"], abs=1e-6) for e in ends)
    state = RunState.load(workspace.root / "runs" / result.run_id / "state.json")
    study = studies.open_study(workspace.db_url, state.study_name, state.seed)
    chosen = study.trials[result.best["trial"]]
    assert chosen.value == pytest.approx(chosen.user_attrs["ranking"]["mean"])
    assert result.best["refit"]["epochs"] == chosen.user_attrs["ranking"]["rounds"]
    assert state.cv == {"mode": "auto", "folds": 3, "repeats": 3}

    off = train(workspace, "tiny", trials=2, cv="off")
    assert off.to_dict()["ranking"]["measure"] == "validation"
    assert all(r["measure"] == "validation" for r in off.to_dict()["ranking"]["trials"])
    state = RunState.load(workspace.root / "runs" / off.run_id / "state.json")
    study = studies.open_study(workspace.db_url, state.study_name, state.seed)
    for t in studies.trained(study):  # validation ranks, as before --cv
        assert t.user_attrs.get("ranking") is None
        assert t.value == t.user_attrs["metrics"]["accuracy"]


@pytest.mark.slow
def test_trial_workers_rank_linear_trials_by_cv(workspace, make_dataset, monkeypatch) -> None:
    """The run state carries ``--cv`` to the workers: their linear trials are told the CV
    mean, and their progress events report it."""
    from autovision.search import study as studies
    from autovision.search import workers as pool
    from autovision.search.run import train
    from autovision.search.state import RunState

    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["linear"],
        "sizes": {"efficientnet_lite0": [32]},
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    monkeypatch.setenv(pool.ENV_HEARTBEAT, "1")
    make_dataset(labels=("a", "b"), counts=(8, 4, 2), size=32)
    events: list[dict] = []
    result = train(workspace, "tiny", trials=2, workers=2, cv="on", progress=events.append)
    state = RunState.load(workspace.root / "runs" / result.run_id / "state.json")
    study = studies.open_study(workspace.db_url, state.study_name, state.seed)
    ran = studies.trained(study)
    assert len({t.user_attrs["worker"] for t in ran}) == 2
    assert all(t.value == pytest.approx(t.user_attrs["ranking"]["mean"]) for t in ran)
    ends = [e for e in events if e["event"] == "trial_end" and e.get("worker")]
    assert ends and all(e["ranking"]["mean"] == pytest.approx(e["score"], abs=1e-6) for e in ends)
