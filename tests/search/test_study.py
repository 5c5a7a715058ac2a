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
