"""``train()``: one call from a dataset version to a registered model package."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autovision.data.dataset import parse_ref
from autovision.errors import TrainingError
from autovision.search import cache, metrics
from autovision.search.budget import Budget
from autovision.search.combine import Settings, choose
from autovision.search.cv import FOLDS, CVSettings
from autovision.search.cv import summary as ranking_summary
from autovision.search.exclude import excluded_for_training, training_view
from autovision.search.prepare import TrainData, prepare_data
from autovision.search.search import Progress, Search
from autovision.search.space import SearchSpace, TrialConfig
from autovision.search.state import RunState, find_resumable, new_run_id
from autovision.search.trainer import (
    Runtime,
    load_checkpoint,
    preprocessing_for,
    score_probs,
)
from autovision.security.audit import audited
from autovision.usage.records import current_train, recorded_train


@dataclass
class TrainResult:
    """What ``autovision train`` reports; :meth:`to_dict` is its ``--json`` object."""

    model: str
    dataset: str
    dataset_version: int
    task: str
    validation: dict[str, float]
    best: dict[str, Any]
    trials: int
    stop_reason: str
    seconds: float
    path: Path | None = None
    run_id: str = ""
    name: str = ""
    version: int = 0
    excluded: dict[str, Any] | None = None  # what --exclude-issues left out (None: not used)
    ensemble: dict[str, Any] | None = None  # members, flips, inference cost (search.combine)
    ranking: dict[str, Any] | None = None  # how trials were ranked, per trial (search.cv)

    @property
    def ref(self) -> str:
        """``NAME@VERSION``: the named model version this run registered."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "name": self.name,
            "version": self.version,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "task": self.task,
            "validation": self.validation,
            "best": self.best,
            "trials": self.trials,
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 2),
            "excluded": self.excluded,
            "ensemble": self.ensemble,
            "ranking": self.ranking,
        }


@audited(
    "train",
    start=True,
    args=(
        "dataset_ref",
        "name",
        "budget",
        "node_hours",
        "trials",
        "task",
        "base_model",
        "resume",
        "exclude_issues",
        "ensemble",
        "tta",
        "max_inference_cost",
        "cv",
        "cv_folds",
        "workers",
        "ray_address",
        "cpus_per_trial",
        "gpus_per_trial",
    ),
    result=lambda r: {
        "model": r.model,
        "version": r.ref,
        "trials_run": r.trials,
        "stop_reason": r.stop_reason,
    },
)
@recorded_train  # one usage record per run, also when it fails
def train(
    ws: Any,
    dataset_ref: str,
    *,
    budget: str | float | None = None,
    node_hours: float | None = None,
    trials: int | None = None,
    task: str = "auto",
    base_model: str | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: Progress | None = None,
    space: SearchSpace | None = None,
    name: str | None = None,
    exclude_issues: str | Sequence[str] | None = None,
    ensemble: str = "auto",
    tta: str = "auto",
    max_inference_cost: float = 2.0,
    cv: str = "auto",
    cv_folds: int = FOLDS,
    workers: int | None = None,
    ray_address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
) -> TrainResult:
    """Search for the best model of ``dataset_ref`` (``NAME`` or ``NAME@N``) within the budget,
    write its package into ``ws.models_dir`` and register it.

    ``budget`` is wall-clock (``"30m"``, or seconds); ``node_hours`` the cloud unit;
    ``trials`` a count (reproducible for a ``seed``). ``resume`` continues the latest
    unfinished run of the dataset with its original settings. ``progress`` receives one dict
    per event (``search_start``, ``trial_start``, ``epoch``, ``trial_end``, ``refit_skipped``,
    ``export``, ``done``). ``space`` restricts the search space (default:
    ``AUTOVISION_SEARCH_SPACE`` or the whole registry). ``name``: the named model the result
    becomes the next version of (default: the dataset's name; see :mod:`autovision.versions`).
    ``base_model`` may be a model id or a version reference (``NAME@production``).
    ``exclude_issues`` (``"label_issues,exact_duplicates"``, or a list) leaves the images those
    issues flag out of the train and validation data (never out of the test split; see
    :mod:`autovision.search.exclude`); a resumed run keeps what its first session left out.
    ``ensemble`` (``auto``: a weighted ensemble of the best trials when it beats the chosen
    one on validation; ``off``), ``tta`` (``auto``: horizontal-flip averaging when it helps;
    ``off``) and ``max_inference_cost`` (the packaged graph's time per image at most this
    times the chosen trial's) shape the package (see :mod:`autovision.search.combine`).
    ``cv`` (``auto``: when the rarest label has fewer than 50 validation images; ``on``;
    ``off``) ranks linear trials by ``cv_folds``-fold cross-validation over the training and
    validation images (see :mod:`autovision.search.cv`); a resumed run keeps its own.
    ``workers``: explore with that many trial worker processes sharing the run's study (the
    final retraining, refit and package stay in this one; see :mod:`autovision.search.workers`);
    workers on other machines join with ``autovision worker``.
    ``ray_address``: place the trial workers on that Ray cluster instead, as Ray tasks of
    ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs, as many as it holds (``workers``
    caps it); see :mod:`autovision.search.ray_workers`.
    """
    import torch

    from autovision.versions.refs import check_model_name

    if name is not None:
        check_model_name(name)
    combining = Settings(ensemble=ensemble, tta=tta, max_inference_cost=max_inference_cost)
    cv_settings = CVSettings(mode=cv, folds=cv_folds)  # checked before any work
    _import_libraries()
    started = time.monotonic()  # the budget counts from here, after the start-up imports
    if resume:
        name, version = parse_ref(dataset_ref)
        state = find_resumable(ws, name, version)
        state.sessions += 1
        dv = ws.dataset(f"{state.dataset}@{state.dataset_version}")
        plan_budget = Budget.from_dict(state.budget)
        space = SearchSpace.from_dict(state.space)
        task, seed, base_model = state.task, state.seed, state.base_model
        name = name or state.name
        excluded = state.excluded
    else:
        dv = ws.dataset(dataset_ref)
        plan_budget = Budget.from_args(budget, node_hours, trials)
        space = space or SearchSpace.from_env()
        state = None
        excluded = excluded_for_training(ws, dv, exclude_issues) if exclude_issues else None
    stored_hash = dv.content_hash  # the stored version's, also when training on a view
    if excluded:
        dv = training_view(dv, excluded["ids"])
    data = prepare_data(dv, task=task, seed=seed)
    if base_model:  # a version reference: record the concrete model id it names now
        base_model = ws.model(base_model)["model"]
    base = _load_base(ws, base_model, data) if base_model else None
    if state is None:
        state = RunState(
            run_id=new_run_id(),
            dataset=dv.name,
            dataset_version=dv.version,
            task=data.task,
            seed=seed,
            budget=plan_budget.to_dict(),
            base_model=base_model,
            name=name,
            space=space.to_dict(),
            exclude_issues=excluded["issues"] if excluded else None,
            excluded=excluded,
            cv=cv_settings.to_dict(),
        )
    state.save(ws)
    deterministic = plan_budget.trials is not None and not plan_budget.timed
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        rt = Runtime.create(ws, data, deterministic=deterministic, base=base)
        if (rec := current_train()) is not None:
            rec.note(device=str(rt.device), gpus=1 if rt.gpu else 0)

        explore = heartbeat = None
        if ray_address:
            from autovision.search import ray_workers
            from autovision.search import workers as pool

            explore = ray_workers.explore_on_ray(
                ray_address,
                cpus_per_trial=cpus_per_trial,
                gpus_per_trial=gpus_per_trial,
                workers=workers,
            )
            heartbeat = pool.heartbeat_settings()
        elif workers:
            from autovision.search import workers as pool

            explore, heartbeat = pool.explore_on(workers), pool.heartbeat_settings()
        search = Search(
            rt,
            state,
            space,
            plan_budget,
            progress=progress,
            started=started,
            keep=combining.keep,
            reserve_models=combining.reserve_models,
            explore=explore,
            heartbeat=heartbeat,
        )
        result = search.run()
        if progress:
            progress(
                {"event": "export", "elapsed": search.spent(), "time_left": search.time_left()}
            )
        out = _export(ws, rt, search, result, state, base_model, stored_hash, combining)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    if progress:
        progress(
            {"event": "done", "elapsed": out.seconds, "time_left": None, "result": out.to_dict()}
        )
    return out


def _import_libraries() -> None:
    """Start-up: the heavy imports (seconds on a busy machine) before the budget clock runs."""
    import sklearn.metrics  # noqa: F401
    import timm.optim  # noqa: F401
    import timm.scheduler  # noqa: F401

    from autovision.models.registry import list_backbones

    list_backbones()


def _load_base(ws: Any, model_id: str, data: TrainData) -> Any:
    from autovision.search.modes import BaseModel

    path = ws.model_path(model_id)
    base = BaseModel.load(model_id, path)
    if base.task != data.task:
        raise TrainingError(
            f"base model {model_id} is {base.task}, the dataset is trained as {data.task}"
        )
    lost = [lab for lab in base.labels if lab not in data.labels]
    if len(lost) == len(base.labels):
        raise TrainingError(
            f"base model {model_id} shares no label with {data.dataset.ref} "
            f"(base labels: {', '.join(base.labels)})"
        )
    return base


def _export(
    ws: Any,
    rt: Runtime,
    search: Search,
    result: Any,
    state: RunState,
    base_model: str | None,
    dataset_hash: str,
    combining: Settings,
) -> TrainResult:
    from autovision.models.package import new_model_id, save_package
    from autovision.models.registry import get_backbone_cfg
    from autovision.search import study as studies

    data = rt.data
    bt = result.best
    cfg = TrialConfig.from_dict(bt.user_attrs["config"])
    spec = preprocessing_for(cfg)
    # validation measures the chosen trial (or the mix); a refit of it (trained on
    # validation too) is what the package holds
    refit = load_checkpoint(result.refit_folder)[0] if result.refit_folder is not None else None
    choice = choose(
        rt,
        studies.open_study(ws.db_url, state.study_name, state.seed),
        bt,
        search.trial_dir,
        settings=combining,
        refit_weights=refit,
        time_left=search.time_left,
        seconds_per_model=search.planner.export_s(cfg),
    )
    model, probs = choice.model, choice.probs
    study = studies.open_study(ws.db_url, state.study_name, state.seed)
    ranking = ranking_summary(search.ranking, studies.trained(study))
    idx = np.arange(len(data.val))
    _, validation = score_probs(data, idx, probs)
    thresholds = None
    if data.multi_label:
        thresholds = [float(t) for t in metrics.best_thresholds(data.y_val[idx], probs)]
    best = {
        **cfg.to_dict(),
        "trial": bt.number,
        "train_images": int(bt.user_attrs.get("n_train", data.profile.n_train)),
        "phase": bt.user_attrs.get("phase", "explore"),
        "refit": result.refit,
    }
    model_id = new_model_id()
    seconds_so_far = search.spent()
    meta = {
        "hyperparameters": best,
        "backbone_cfg": get_backbone_cfg(cfg.backbone).to_dict(),
        "dataset": {
            "name": data.dataset.name,
            "version": data.dataset.version,
            "ref": data.dataset.ref,
            "content_hash": dataset_hash,
            "train_images": len(data.train),
            "validation_images": len(data.val),
            "validation_source": data.validation_source,
            "label_counts": data.label_counts,
            "profile": data.profile.to_dict(),
            "excluded": state.excluded,
        },
        "validation": validation,
        "ensemble": choice.ensemble,
        "tta": choice.tta,
        "inference_cost": choice.cost,
        "validation_of": _validation_of(bt.number, result.refit, choice),
        "training_seconds": round(seconds_so_far, 2),
        "seed": state.seed,
        "stop_reason": result.stop_reason,
        "trials": result.trials,
        "base_model": base_model,
        "search": {
            "run_id": state.run_id,
            "settings": {
                "ensemble": combining.ensemble,
                "tta": combining.tta,
                "max_inference_cost": combining.max_inference_cost,
            },
            "study": state.study_name,
            "budget": state.budget,
            "space": state.space,
            "device": str(rt.device),
            "sessions": state.sessions,
            "ranking": search.ranking.describe(),
        },
    }
    if choice.architecture is not None:  # an ensemble and/or flips: one combined graph
        meta["architecture"] = choice.architecture
    path = save_package(
        ws.models_dir / model_id,
        model.cpu(),
        labels=data.labels,
        task=data.task,
        backbone=cfg.backbone,
        preprocessing=spec,
        thresholds=thresholds,
        meta=meta,
    )
    seconds = search.spent()
    score = validation.get(metrics.PRIMARY[data.task])
    version = ws.register_model(
        model_id,
        dataset=data.dataset.name,
        dataset_version=data.dataset.version,
        task=data.task,
        path=path,
        score=score,
        info={
            "validation": validation,
            "best": best,
            "stop_reason": result.stop_reason,
            "seconds": round(seconds, 2),
            "trials": result.trials,
            "run_id": state.run_id,
            "base_model": base_model,
            "excluded": state.excluded,
            "ensemble": choice.summary(),
        },
        name=state.name,
    )
    state.status = "finished"
    state.model = model_id
    state.spent_s = seconds
    state.save(ws)
    shutil.rmtree(result.folder.parent, ignore_errors=True)  # the package holds the weights
    from autovision.cards import refresh_package_card

    refresh_package_card(ws, model_id)  # model_card.{json,md,html} beside model.json
    cache.clear_if_encrypted(ws)
    return TrainResult(
        model=model_id,
        dataset=data.dataset.name,
        dataset_version=data.dataset.version,
        task=data.task,
        validation=validation,
        best=best,
        trials=result.trials,
        stop_reason=result.stop_reason,
        seconds=seconds,
        path=path,
        run_id=state.run_id,
        name=version.name,
        version=version.version,
        excluded=state.excluded,
        ensemble=choice.summary(),
        ranking=ranking,
    )


def _validation_of(trial: int, refit: dict[str, Any] | None, choice: Any) -> str:
    """``model.json``'s ``validation_of``: what the validation figures measure."""
    refit_text = (
        f"configuration refit on {refit['images']} training + validation images" if refit else ""
    )
    if choice.ensemble.get("kept"):
        members = [m["trial"] for m in choice.ensemble["members"]]
        text = (
            f"a weighted ensemble of trials {', '.join(map(str, members))}, trained on the "
            "training images only"
        )
        if refit and trial in members:
            text += f" (trial {trial}'s weights in the package are its {refit_text})"
    elif refit:
        text = f"trial {trial}, trained on the training images only (the weights are its "
        text += f"{refit_text})"
    else:
        text = f"trial {trial} (the weights)"
    return text + (", horizontal flips averaged" if choice.tta.get("enabled") else "")
