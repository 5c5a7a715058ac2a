from __future__ import annotations

from types import SimpleNamespace

from autovision.search.study import converged


def _t(value: float | None, stopped: str = "done", epochs_run: int = 5) -> SimpleNamespace:
    return SimpleNamespace(value=value, user_attrs={"stopped": stopped, "epochs_run": epochs_run})


def test_converged_after_patience_trials_without_improvement() -> None:
    trials = [_t(0.8), *(_t(0.7) for _ in range(3))]
    assert converged(trials, patience=3, delta=0.002)
    assert not converged(trials[:-1], patience=3, delta=0.002)
    assert not converged([*trials, _t(0.81)], patience=3, delta=0.002)  # a new best
    assert converged([*trials[:-1], _t(0.801)], patience=3, delta=0.002)  # under delta


def test_trials_cut_within_their_first_epoch_are_not_evidence() -> None:
    """A fine-tuning trial stopped by its deadline before one epoch scores near chance; it
    says nothing about whether the search still improves."""
    cut = [_t(0.15, "deadline", 1) for _ in range(3)]
    assert not converged([_t(0.8), *cut], patience=3, delta=0.002)
    late_cut = [_t(0.7, "deadline", 4) for _ in range(3)]  # several epochs: a real result
    assert converged([_t(0.8), *late_cut], patience=3, delta=0.002)


def _scored(value: float, loss: float | None, number: int = 0) -> SimpleNamespace:
    metrics = {} if loss is None else {"log_loss": loss}
    attrs = {"stopped": "done", "epochs_run": 5, "metrics": metrics}
    return SimpleNamespace(value=value, number=number, user_attrs=attrs)


def test_ties_and_saturation_are_not_convergence() -> None:
    """A validation split of a few images scores every good trial at 1.0: trials that tie
    but lower the log loss still improve, and a saturated score with nothing else to rank by
    never converges (the old rule stopped after ``patience`` ties)."""
    better = [_scored(1.0, 0.5 * 0.8**i) for i in range(6)]
    assert not converged(better, patience=3, delta=0.002)
    flat = [_scored(1.0, 0.3) for _ in range(6)]
    assert converged(flat, patience=3, delta=0.002)  # the log loss stopped improving too
    blind = [_scored(1.0, None) for _ in range(6)]
    assert not converged(blind, patience=3, delta=0.002)


def test_equal_scores_rank_by_log_loss() -> None:
    from autovision.search.study import rank_key, trial_loss

    first, better = _scored(1.0, 0.4, 0), _scored(1.0, 0.1, 1)
    cv = _scored(0.9, 0.9, 2)
    cv.user_attrs["ranking"] = {"loss_mean": 0.2}
    assert trial_loss(cv) == 0.2  # the cross-validated loss when there is one
    ranked = sorted([first, better, cv, _scored(1.0, None, 3)], key=rank_key)
    assert [t.number for t in ranked] == [1, 0, 3, 2]
