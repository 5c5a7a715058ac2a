from __future__ import annotations

import pytest

from autovision.search.planner import CostModel, epochs_that_fit, fit_fidelity
from autovision.search.space import TrialConfig

CNN = TrialConfig("compact_cnn", "scratch", 28, epochs=10)


def test_measurements_replace_priors_and_calibrate_the_family() -> None:
    cost = CostModel(gpu=False)
    prior = cost.train_s(CNN)
    cost.observe(CNN, {"train_s": 2.0, "train_images": 1000, "eval_s": 0.5, "eval_images": 1000})
    assert cost.train_s(CNN) == 0.002 and cost.eval_s(CNN) == 0.0005
    bigger = CNN.with_(image_size=56)
    assert abs(cost.train_s(bigger) - 0.008) < 1e-9  # 4x the MACs at the measured speed
    restored = CostModel(gpu=False, state=cost.to_dict())
    assert restored.train_s(CNN) == 0.002 and prior != 0.002


def test_fit_fidelity_subsamples_then_cuts_epochs() -> None:
    cost = CostModel(gpu=False)
    cost.observe(CNN, {"train_s": 1.0, "train_images": 1000, "eval_s": 0.1, "eval_images": 1000})
    full = fit_fidelity(cost, CNN, seconds=1000, n_train_max=5000, n_eval=500, n_decode=0)
    assert full is not None and full.n_train == 5000 and full.epochs == 10
    part = fit_fidelity(cost, CNN, seconds=30, n_train_max=5000, n_eval=500, n_decode=0)
    assert part is not None and 256 <= part.n_train < 5000 and part.seconds <= 30
    fewer = fit_fidelity(cost, CNN, seconds=2, n_train_max=5000, n_eval=500, n_decode=0)
    assert fewer is not None and fewer.epochs < 10 and fewer.seconds <= 2
    assert fit_fidelity(cost, CNN, seconds=0.3, n_train_max=5000, n_eval=500, n_decode=0) is None


def test_epochs_that_fit() -> None:
    cost = CostModel(gpu=False)
    cost.observe(CNN, {"train_s": 1.0, "train_images": 1000, "eval_s": 0.0, "eval_images": 1})
    fit = epochs_that_fit(cost, CNN, seconds=100.3, n_train=10_000, n_eval=0, n_decode=0)
    assert fit == 10


def test_inference_measurements_calibrate_training_estimates() -> None:
    lite = TrialConfig("efficientnet_lite0", "linear", 224)
    top = TrialConfig("efficientnet_lite0", "finetune_top", 224)
    cost = CostModel(gpu=False)
    prior = cost.train_s(top)
    cost.observe(lite, {"embed_s": 20.0, "embed_images": 1000})  # 20 ms per image
    assert cost.embed_s(lite) == 0.02
    calibrated = cost.train_s(top)
    assert calibrated != prior and 0.02 < calibrated < 0.2  # 1.7x the forward, slower per MAC


def test_fewer_threads_are_planned_as_slower() -> None:
    cost = CostModel(gpu=False)
    cost.cores = 2
    cost.observe(CNN, {"train_s": 1.0, "train_images": 1000, "threads": 1})
    cost.use_threads(2)
    assert cost.train_s(CNN) == 0.0005  # stored as if every core ran
    cost.use_threads(1)
    assert cost.train_s(CNN) == 0.001


def test_activations_to_cache_are_a_fixed_cost() -> None:
    """A ``finetune_top`` trial on cached activations first computes them (at the embedding
    rate), then pays per epoch; an image trial whose cache exists pays only the epochs."""
    top = TrialConfig("efficientnet_lite0", "finetune_top", 224, epochs=10)
    cost = CostModel(gpu=False)
    cost.observe(top, {"train_s": 10.0, "train_images": 1000, "eval_s": 1.0, "eval_images": 1000})
    cost.observe(top.with_(mode="linear"), {"embed_s": 30.0, "embed_images": 1000})
    kw = {"n_train": 1000, "n_eval": 100, "epochs": 10}
    cached = cost.trial_seconds(top, **kw)
    assert abs(cost.trial_seconds(top, n_embed=4000, **kw) - cached - 120.0) < 1e-6
    fits = fit_fidelity(cost, top, seconds=cached + 1, n_train_max=1000, n_eval=100, n_decode=0)
    assert fits is not None and fits.n_train == 1000 and fits.epochs == 10
    short = fit_fidelity(
        cost, top, seconds=cached + 60, n_train_max=1000, n_eval=100, n_decode=0, n_cache=4000
    )
    assert short is not None and short.seconds <= cached + 60
    assert short.n_train < 1000 or short.epochs < 10
    assert (
        epochs_that_fit(
            cost, top, seconds=cached + 60, n_train=1000, n_eval=100, n_decode=0, n_cache=4000
        )
        < 10
    )


def test_cached_top_training_is_priced_as_the_top_stages() -> None:
    """Its training and evaluation rates are the top stages': they neither price it as a
    whole network nor calibrate whole-network inference (embeddings, exports)."""
    top = TrialConfig("efficientnet_lite0", "finetune_top", 224)
    lite = top.with_(mode="linear")
    cost = CostModel(gpu=False)
    image_path = cost.train_s(top)
    cost.cached.add(top.key)
    assert cost.train_s(top) < 0.5 * image_path
    before = cost.embed_s(lite)
    cost.observe(top, {"eval_s": 0.1, "eval_images": 1000})
    assert cost.eval_s(top) == 0.0001 and cost.embed_s(lite) == before
    assert cost.embed_s(top) == before  # its whole-network forward: not its eval rate
    restored = CostModel(gpu=False, state=cost.to_dict())
    assert restored.cached == {top.key} and restored.train_s(top) == cost.train_s(top)


def test_a_trial_on_every_training_image_leaves_time_for_its_refit(workspace, make_dataset) -> None:
    """Should it become the best, it is refit on training + validation images: the two fit
    the time left together, the trial with fewer epochs."""
    from autovision.search.budget import Budget
    from autovision.search.planner import Planner
    from autovision.search.prepare import prepare_data
    from autovision.search.space import SearchSpace
    from autovision.search.state import RunState
    from autovision.search.trainer import Runtime

    data = prepare_data(make_dataset(labels=("a", "b"), counts=(40, 10, 0)))
    rt = Runtime.create(workspace, data)
    state = RunState("r", "tiny", 1, data.task, 0, {"seconds": 600.0})
    planner = Planner(rt, SearchSpace(), Budget(seconds=600.0), state)
    cfg = CNN.with_(image_size=16, epochs=20)
    planner.cost.observe(
        cfg, {"train_s": 1.0, "train_images": 80, "eval_s": 0.1, "eval_images": 20}
    )
    alone = planner.explore(cfg, 30.0, total=30.0, search_left=30.0)
    state.explore = {}
    both = planner.explore(cfg, 30.0, total=30.0, search_left=30.0, refit_left=30.0)
    assert alone.n_train == both.n_train == 80  # every training image
    assert both.epochs < alone.epochs
    est = planner.cost.trial_seconds(
        cfg, n_train=80, n_eval=20, epochs=both.epochs, n_decode=planner.n_decode(cfg)
    )
    assert est + planner.refit_seconds(cfg, both.epochs) <= 30.0
    # once the best is kept aside for, trials that overran into its time stop the exploration
    # rather than take the rest (the refit is then skipped if it no longer fits)
    best = cfg.with_(epochs=both.epochs)
    kept = planner.final_wanted(best, best_full=True, search_total=100.0, search_left=1.0)
    assert kept == planner.refit_reserve(best, both.epochs) > planner.refit_seconds(best, 5) > 1.0


def test_a_linear_trial_is_priced_with_its_measured_cross_validation() -> None:
    lite = TrialConfig("efficientnet_lite0", "linear", 224)
    cost = CostModel(gpu=True)
    kw = {"n_train": 200, "n_eval": 50, "epochs": 1}
    plain = cost.trial_seconds(lite, **kw)
    cost.observe(lite, {"cv_s": 2.0, "cv_images": 250})  # one repeat of the folds
    assert cost.trial_seconds(lite, **kw) == pytest.approx(plain + 200 * 2.0 / 250)
    again = CostModel(gpu=True, state=cost.to_dict())  # kept in the run's state
    assert again.trial_seconds(lite, **kw) == pytest.approx(plain + 1.6)
