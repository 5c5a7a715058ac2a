from __future__ import annotations

import time

import numpy as np
import torch

from autovision.search.trainer import (
    _ScheduleClock,
    effective_batch_size,
    improves,
    load_checkpoint,
    save_checkpoint,
)


def test_schedule_follows_steps_or_the_deadline() -> None:
    assert _ScheduleClock(100, None).progress(7) == 7
    late = _ScheduleClock(100, time.monotonic() - 1)
    assert late.progress(3) == 100
    clock = _ScheduleClock(100, time.monotonic() + 3600)
    assert clock.progress(40) == 40


def test_a_tied_score_with_a_lower_log_loss_is_an_improvement() -> None:
    """A small validation split saturates accuracy: the epoch kept (and replayed by the
    refit) is the first with the best score only when no later one ties it at a lower loss."""
    assert improves(0.9, 0.5, (0.8, 1), 0.1)  # higher score: whatever the loss
    assert improves(1.0, 0.02, (1.0, 1), 0.68)  # tie, lower loss
    assert not improves(1.0, 0.68, (1.0, 1), 0.68)  # tie, same loss
    assert not improves(1.0, None, (1.0, 1), 0.68)  # tie, no loss computed
    assert not improves(0.9, 0.01, (1.0, 1), 0.68)  # lower score: whatever the loss
    assert improves(0.0, None, (-np.inf, -1), np.inf)  # the first evaluation


def test_small_data_gets_smaller_batches() -> None:
    assert effective_batch_size(128, 60_000) == 128
    assert effective_batch_size(128, 1437) == 28
    assert effective_batch_size(128, 100) == 16
    assert effective_batch_size(128, 5) == 5


def test_checkpoint_round_trip(tmp_path) -> None:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    probs = np.array([[0.2, 0.8]], dtype=np.float32)
    save_checkpoint(tmp_path / "t", state, probs, np.array([4]))
    w, p, idx = load_checkpoint(tmp_path / "t")
    assert torch.equal(w["w"], state["w"]) and np.array_equal(p, probs) and idx.tolist() == [4]
    assert sorted(f.name for f in (tmp_path / "t").iterdir()) == [
        "best.safetensors",
        "val_index.npy",
        "val_probs.npy",
    ]


def test_a_trial_whose_weights_overflow_stops_as_diverged(
    workspace, make_dataset, monkeypatch, tmp_path
) -> None:
    """Non-finite probabilities never become a checkpoint (argmax of NaN would score as
    'always the first label')."""
    import autovision.search.trainer as trainer
    from autovision.search.prepare import prepare_data
    from autovision.search.space import TrialConfig

    data = prepare_data(make_dataset())
    rt = trainer.Runtime.create(workspace, data)
    real = trainer.predict
    monkeypatch.setattr(trainer, "predict", lambda *a: np.full_like(real(*a), np.nan))
    cfg = TrialConfig("compact_cnn", "scratch", 16, epochs=2, batch_size=8)
    plan = trainer.TrialPlan(n_train=data.profile.n_train, epochs=2, threads=1)
    out = trainer.train_trial(rt, cfg, plan, tmp_path / "t")
    assert out.stopped == "diverged" and out.score is None and out.epochs_run == 1
    assert not (tmp_path / "t" / "best.safetensors").exists()


def test_a_refit_trains_on_validation_images_too_and_is_scored_once(
    workspace, make_dataset, tmp_path
) -> None:
    import autovision.search.trainer as trainer
    from autovision.search.prepare import prepare_data
    from autovision.search.space import TrialConfig

    data = prepare_data(make_dataset(labels=("a", "b"), counts=(12, 6, 0)))
    rt = trainer.Runtime.create(workspace, data)
    cfg = TrialConfig("compact_cnn", "scratch", 16, epochs=3, batch_size=8)
    n, n_val = data.profile.n_train, len(data.val)
    scores: list[float] = []
    plan = trainer.TrialPlan(n_train=n, epochs=3, threads=1, patience=1, refit=True)
    out = trainer.train_trial(rt, cfg, plan, tmp_path / "r", lambda e, s: scores.append(s))
    bs = trainer.effective_batch_size(8, n + n_val)
    assert out.timings["train_images"] == 3 * ((n + n_val) // bs) * bs
    assert out.epochs_run == 3 and out.best_epoch == 3 and out.stopped == "done"
    assert out.timings["eval_images"] == n_val and len(scores) == 1  # the last epoch only
    plain = trainer.train_trial(rt, cfg, trainer.TrialPlan(n, 3, threads=1), tmp_path / "p")
    assert plain.timings["train_images"] == 3 * (n // trainer.effective_batch_size(8, n)) * (
        trainer.effective_batch_size(8, n)
    )


def test_a_refit_replays_its_trials_schedule_up_to_the_best_epoch() -> None:
    from autovision.search.trainer import TrialPlan, schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    refit = TrialPlan(10, epochs=2, deadline=time.monotonic() + 1, refit=True, schedule_epochs=6)
    sched, clock = schedule(opt, 0.1, refit, steps_per_epoch=5)
    assert clock.total == 30 and clock.deadline is None  # the trial's 6 epochs, by steps only
    sched.step_update(num_updates=clock.progress(10))  # its best epoch: 2 of 6
    assert opt.param_groups[0]["lr"] > 0.05  # not annealed as a 2-epoch schedule would be
    trial = TrialPlan(10, epochs=2, deadline=time.monotonic() + 1)
    assert schedule(opt, 0.1, trial, steps_per_epoch=5)[1].total == 10
    assert not refit.evaluates(1, "done") and refit.evaluates(2, "done")
    assert not refit.evaluates(2, "deadline")  # cut short: not kept, not scored
    assert trial.evaluates(1, "done")
