"""The Optuna study of a run: seeded TPE, successive halving after a warm-up, RDB storage in
the workspace database, the default trials enqueued first, and clean-up after a crash."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import TrialState

from autovision.search.space import TrialConfig, params_for

PRUNE_WARMUP = 4  # finished trials before pruning starts
N_STARTUP = 4  # trials before TPE models the space (the enqueued defaults count)
LOSS_DELTA = 0.02  # relative log-loss improvement that counts when scores tie (converged)


class WarmPruner(optuna.pruners.BasePruner):
    """Successive halving that only prunes once ``warmup_trials`` trials have finished
    (Optuna's own pruner would stop the second trial as soon as it trails the first)."""

    def __init__(self, inner: optuna.pruners.BasePruner, warmup_trials: int) -> None:
        self.inner = inner
        self.warmup_trials = warmup_trials

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        decision = self.inner.prune(study, trial)  # records the rung values either way
        return bool(decision) and len(trained(study)) >= self.warmup_trials


def storage(db_url: str, heartbeat: tuple[int, int] | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on ``db_url``. ``heartbeat`` (interval, grace period in seconds):
    trials whose process stops beating for the grace period are failed and retried once
    (:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`), for searches spread over workers.
    SQLite waits on a busy database rather than failing (the workspace's is in WAL mode)."""
    kw: dict[str, Any] = {}
    if db_url.startswith("sqlite"):
        kw["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    if heartbeat is None:
        return _serialized(optuna.storages.RDBStorage(db_url, **kw))
    # ask/tell beats through :func:`optuna.storages._heartbeat.get_heartbeat_thread`
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _serialized(
            optuna.storages.RDBStorage(
                db_url,
                heartbeat_interval=heartbeat[0],
                grace_period=heartbeat[1],
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1
                ),
                **kw,
            )
        )


def _serialized(storage: optuna.storages.RDBStorage) -> optuna.storages.RDBStorage:
    """On SQLite, every Optuna transaction takes the write lock when it begins (``BEGIN
    IMMEDIATE``): its ``SELECT ... FOR UPDATE`` is no lock there, so two processes popping
    the same waiting trial would both get it. PostgreSQL locks the row itself."""
    engine = storage.engine
    if engine.dialect.name != "sqlite":
        return storage
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver begins nothing itself: see below

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners: none is kept
    return storage


def open_study(
    db_url: str, name: str, seed: int, *, heartbeat: tuple[int, int] | None = None
) -> optuna.Study:
    """Create or load the study ``name`` in the database at ``db_url`` (``heartbeat``: see
    :func:`storage`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=N_STARTUP, multivariate=True, group=True
        )
    pruner = WarmPruner(
        optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
        warmup_trials=PRUNE_WARMUP,
    )
    return optuna.create_study(
        study_name=name,
        storage=storage(db_url, heartbeat),
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def enqueue_defaults(
    study: optuna.Study,
    configs: Iterable[TrialConfig],
    *,
    base_model: bool,
    imbalanced: bool,
    multi_label: bool,
) -> None:
    """Enqueue the default configurations (only into a new study)."""
    if study.trials:
        return
    for cfg in configs:
        params = params_for(
            cfg, base_model=base_model, imbalanced=imbalanced, multi_label=multi_label
        )
        study.enqueue_trial(params, user_attrs={"default": True})


def fail_stale(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a killed process will never finish: mark them failed and
    return their numbers."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted (resumed run)")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return [t.number for t in stale]


def trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that trained a model (completed or pruned; not skipped nor failed)."""
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("trained")]


def trial_loss(trial: Any) -> float:
    """The log loss that breaks ties between equal scores: the cross-validated mean loss
    (:mod:`.cv`) when the trial has one, else its validation log loss (inf: none)."""
    attrs = trial.user_attrs
    loss = (attrs.get("ranking") or {}).get("loss_mean")
    if loss is None:
        loss = (attrs.get("metrics") or {}).get("log_loss")
    return float(loss) if loss is not None and loss == loss else float("inf")


def rank_key(trial: Any) -> tuple[float, float, int]:
    """Sort key of completed trials, best first: the higher score, then (equal scores: a
    small validation split saturates accuracy) the lower log loss, then the earlier."""
    return (-float(trial.value), trial_loss(trial), trial.number)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The study's best trial by :func:`rank_key` (Optuna's own keeps the first of equal
    scores); ``ValueError`` when no trial completed."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise ValueError("no trial completed")
    return min(done, key=rank_key)


def best_number(study: optuna.Study) -> int | None:
    try:
        return best_trial(study).number
    except ValueError:
        return None


def last_error(study: optuna.Study) -> str | None:
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    errors = [t.user_attrs["error"] for t in failed if "error" in t.user_attrs]
    return errors[-1] if errors else None


def waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def failures_in_a_row(study: optuna.Study) -> int:
    """Failed trials (errors) since the last one that trained (skipped ones aside)."""
    n = 0
    for t in reversed(study.get_trials(deepcopy=False)):
        if t.state == TrialState.FAIL:
            n += 1
        elif t.user_attrs.get("trained"):
            break
    return n


def cut_in_first_epoch(trial: Any) -> bool:
    """A trial its deadline stopped within or right after its first epoch: its score says
    little (the learning rate is still warming up)."""
    attrs = trial.user_attrs
    return attrs.get("stopped") == "deadline" and int(attrs.get("epochs_run", 0)) <= 1


SATURATED = 1.0 - 1e-9  # a ranking score at its ceiling (accuracy or F1 of 1.0)


def converged(
    trials: list[Any], patience: int, delta: float, loss_delta: float = LOSS_DELTA
) -> bool:
    """``patience`` trials in a row without improving on the best: a score higher by
    ``delta``, or an equal score (within ``delta``) with a log loss lower by the share
    ``loss_delta``. Ties and saturation are not convergence: equal scores still rank by
    log loss, and a best score at its ceiling with no log loss to rank by never converges
    (the measure has no room left to show an improvement). Trials cut by their deadline
    within the first epoch are no evidence either way."""
    scored = [t for t in trials if t.value is not None and not cut_in_first_epoch(t)]
    if len(scored) <= patience:
        return False
    best_i, best_v, best_loss = 0, float("-inf"), float("inf")
    for i, t in enumerate(scored):
        loss = trial_loss(t)
        if t.value > best_v + delta:
            best_i, best_v, best_loss = i, t.value, loss
        elif t.value >= best_v - delta and loss < best_loss * (1 - loss_delta):
            best_i, best_v, best_loss = i, max(best_v, t.value), loss
    if best_v >= SATURATED and best_loss == float("inf"):
        return False
    return len(scored) - 1 - best_i >= patience
