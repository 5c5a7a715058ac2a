"""Training with search: an Optuna study over backbone x training mode x hyperparameters,
planned to fit a budget, with early stopping, checkpoints and resume.

``train(ws, "flowers", budget="30m")`` is the whole of it; the modules behind it are small:
``budget`` (parse budgets), ``prepare`` (checks, splits, targets), ``cache`` (decoded pixels
and embeddings), ``space`` (what is searched), ``augment`` (batched augmentation), ``modes``
and ``trainer`` / ``linear`` (one trial), ``planner`` (time), ``search`` (the study),
``state`` (resume) and ``run`` (the package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BUDGET_REACHED",
    "MODEL_CONVERGED",
    "TRIALS_DONE",
    "Budget",
    "SearchSpace",
    "TrainResult",
    "parse_duration",
    "train",
]

BUDGET_REACHED = "BUDGET_REACHED"
MODEL_CONVERGED = "MODEL_CONVERGED"
TRIALS_DONE = "TRIALS_DONE"

if TYPE_CHECKING:
    from autovision.search.budget import Budget, parse_duration
    from autovision.search.run import TrainResult, train
    from autovision.search.space import SearchSpace

_LAZY = {
    "Budget": "autovision.search.budget",
    "parse_duration": "autovision.search.budget",
    "train": "autovision.search.run",
    "TrainResult": "autovision.search.run",
    "SearchSpace": "autovision.search.space",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autovision.search' has no attribute {name!r}")
