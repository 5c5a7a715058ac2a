"""The search loop under a budget.

Strong defaults run first, then configurations drawn by TPE (see :mod:`.study`). A timed
search explores, then retrains what it chose:

1. *explore*: every trial on the same stratified subsample of the training images (all of
   them when that fits) and the validation images that rank trials (a small validation
   split: linear trials by cross-validation over training + validation, :mod:`.cv`), pruned
   on intermediate scores, until the time set aside for the retraining (2 or 3) is reached
   or trials stop improving (``MODEL_CONVERGED``; equal scores rank by log loss);
2. *final*: the best configuration, if exploration saw only part of the training images,
   retrained on all of them with as many epochs as the rest of the budget holds (capped), so
   most of a large budget goes to the promising model;
3. *refit*: the chosen trial, if it saw every training image, retrained on the training
   *and* validation images: its training replayed (configuration, learning-rate schedule,
   the weights or their moving average) up to the epoch whose weights it kept, scored once
   at the end (validation no longer measures it). Its weights are the package's; the
   validation metrics reported are the chosen trial's. Skipped when the time left does not
   hold it (the trial's own weights are packaged then).

Every trial gets a deadline and is started only if its estimated cost fits the time left
(:mod:`.planner`); the package export is kept aside. With ``--trials N`` and no time budget,
every trial uses all the data and its own epochs, and the search (its refit included) is
reproducible for a seed.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from autovision.errors import ModelError, TrainingError
from autovision.search import study as studies
from autovision.search import toptune
from autovision.search.budget import Budget
from autovision.search.combine import keep_best_folders
from autovision.search.cv import CVSettings, Ranking
from autovision.search.linear import train_linear
from autovision.search.planner import EXPLORE_FIRST_SHARE, Planner
from autovision.search.space import (
    IMBALANCE_RATIO,
    SearchSpace,
    TrialConfig,
    default_configs,
    suggest,
)
from autovision.search.state import RunState
from autovision.search.trainer import Runtime, TrialOutcome, TrialPlan, train_trial

Progress = Callable[[dict[str, Any]], None]

BUDGET_REACHED = "BUDGET_REACHED"
MODEL_CONVERGED = "MODEL_CONVERGED"
TRIALS_DONE = "TRIALS_DONE"

CONVERGE_PATIENCE = 6  # trained trials without improvement that end the exploration
CONVERGE_DELTA = 0.002
CONVERGE_MIN_SHARE = 0.5  # of a time budget spent before the search may call it converged
MAX_SKIPS = 12  # consecutive drawn configurations that do not fit the time left
MAX_FAILS = 5  # consecutive failed trials (errors) that end the search
FINAL_MARGIN = 0.01  # a drawn configuration must beat the defaults by this on a subsample


@dataclass
class SearchResult:
    best: Any  # optuna FrozenTrial
    folder: Path
    trials: int
    stop_reason: str
    refit: dict[str, Any] | None = None  # what the refit trained on (None: no refit)
    refit_folder: Path | None = None  # its checkpoint: the package's weights


class Search:
    """One run's search; :meth:`run` returns the best trial. ``started`` is when the budget
    clock started (``time.monotonic``); ``keep``: how many of the best trials keep their
    checkpoints (the candidates of an ensemble, :mod:`.combine`), ``reserve_models`` how
    many package exports' worth of time the search keeps for its end (the same module).
    ``explore``: a function ``(search, study) -> stop reason`` that runs the exploration
    instead of this process (trial workers, see :mod:`.workers`); the final retraining,
    refit and export stay here."""

    def __init__(
        self,
        rt: Runtime,
        state: RunState,
        space: SearchSpace,
        budget: Budget,
        *,
        progress: Progress | None = None,
        started: float | None = None,
        keep: int = 1,
        reserve_models: int = 1,
        explore: Callable[[Search, Any], str] | None = None,
        heartbeat: tuple[int, int] | None = None,
    ) -> None:
        self.rt, self.state, self.space, self.budget = rt, state, space, budget
        self.keep = keep  # best trials whose checkpoints are kept (ensemble candidates)
        self.reserve_models = reserve_models  # package exports' worth of time kept at the end
        self.data = rt.data
        self.progress = progress
        self.session_start = time.monotonic() if started is None else started
        self.spent_before = state.spent_s
        self.planner = Planner(rt, space, budget, state)
        self.folder = state.dir(rt.ws) / "trials"
        self._last_save = 0.0
        self.best_score = -np.inf
        self.best_cfg: TrialConfig | None = None
        self.best_n_train = 0
        # how trials are ranked (.cv); a run from before --cv existed ranks on validation
        cv = CVSettings.from_dict(state.cv) if state.cv else CVSettings(mode="off")
        self.ranking = Ranking(rt, cv, seed=state.seed)
        self.explore_with = explore  # runs the exploration elsewhere (trial workers)
        self.heartbeat = heartbeat  # Optuna heartbeat (interval, grace) of the study's storage
        self.reports: list[dict[str, Any]] = []  # what each trial worker did (explore)

    @property
    def cost(self) -> Any:
        return self.planner.cost

    # ---- time and state -------------------------------------------------------------------

    def spent(self) -> float:
        return self.spent_before + (time.monotonic() - self.session_start)

    def time_left(self) -> float | None:
        return None if self.budget.seconds is None else self.budget.seconds - self.spent()

    def search_left(self, cfg: TrialConfig | None = None) -> float:
        """Seconds left for trials: the export of the best model so far, or of ``cfg`` if it
        becomes the best, is kept aside."""
        left = self.time_left()
        if left is None:
            return np.inf
        reserve = max((self.planner.export_s(c) for c in (self.best_cfg, cfg) if c), default=0.0)
        return left - self.reserve_models * reserve

    def _emit(self, event: str, **kw: Any) -> None:
        if self.progress is not None:
            left = self.time_left()
            self.progress({"event": event, "elapsed": self.spent(), "time_left": left, **kw})

    def save_state(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_save < 1.0:
            return
        self._last_save = now
        self.state.spent_s = self.spent()
        self.state.costs = self.cost.to_dict()
        self.state.save(self.rt.ws)

    def _beat(self) -> None:
        self.save_state(force=False)

    def _best(self) -> float | None:
        return None if self.best_score == -np.inf else float(self.best_score)

    def trial_dir(self, number: int) -> Path:
        return self.folder / f"{number:04d}"

    def refit_dir(self) -> Path:
        return self.folder / "refit"

    def _data_kw(self) -> dict[str, Any]:
        """What :func:`suggest` and :func:`default_configs` need to know of the data and run."""
        base = self.rt.base
        return {
            "multi_label": self.data.multi_label,
            "gpu": self.rt.gpu,
            "base_backbone": base.backbone if base else None,
            "base_size": base.input_size if base else None,
            "base_resize": base.resize if base else None,
        }

    def _suggest(self, trial: Any) -> TrialConfig:
        return suggest(trial, self.space, self.data.profile, **self._data_kw())

    def _best_full(self) -> bool:
        """Whether the best trial so far saw every training image (it is then refit)."""
        return self.best_cfg is not None and self.best_n_train >= self.data.profile.n_train

    def _final_wanted(self, cfg: TrialConfig | None, search_total: float) -> float:
        best_full = cfg is self.best_cfg and self._best_full()
        if self.state.final_done and not best_full:  # one final retraining per run
            return 0.0
        return self.planner.final_wanted(
            cfg,
            best_full=best_full,
            search_total=search_total,
            search_left=self.search_left(cfg),
        )

    # ---- one trial ------------------------------------------------------------------------

    def run_trial(
        self, study: Any, trial: Any, cfg: TrialConfig, plan: TrialPlan, phase: str
    ) -> TrialOutcome | None:
        folder = self.trial_dir(trial.number)
        shutil.rmtree(folder, ignore_errors=True)
        train, cfg = self._trainer(cfg)
        prune = phase == "explore" and cfg.mode != "linear"
        n = trial.number
        self._emit(
            "trial_start",
            trial=n,
            phase=phase,
            config=cfg.to_dict(),
            n_train=plan.n_train,
            epochs=plan.epochs,
            best=self._best(),
        )

        def on_epoch(epoch: int, score: float) -> bool:
            self.save_state(force=False)
            self._emit(
                "epoch", trial=n, epoch=epoch, epochs=plan.epochs, score=score, best=self._best()
            )
            if not prune:
                return False
            trial.report(score, epoch)
            return trial.should_prune()

        try:
            with get_heartbeat_thread(trial._trial_id, study._storage):
                out = train(self.rt, cfg, plan, folder, on_epoch)
                # a small validation split: the score told is the cross-validated mean (.cv)
                steps, left = self.space.linear_steps, self.search_left(cfg)
                out = self.ranking.rescore(cfg, plan, out, steps=steps, seconds=left)
        except TimeoutError:  # embedding ran past the deadline (what it computed is cached)
            out = None
        except (RuntimeError, ValueError, ModelError) as exc:
            # out of memory, a backbone's weights package missing...: the search goes on
            self._fail(study, trial, folder, f"{type(exc).__name__}: {exc}", shown=str(exc))
            return None
        self.planner.record(cfg, out.timings if out else None)
        if out is not None and out.score is None and out.stopped == "diverged":
            self._fail(study, trial, folder, "training diverged (non-finite loss or probabilities)")
            return out
        if out is None or out.score is None:
            trial.set_user_attr("skipped", "deadline")
            study.tell(trial, state=TrialState.PRUNED)
            shutil.rmtree(folder, ignore_errors=True)
            self._emit("trial_end", trial=n, state="PRUNED", best=self._best())
            return out
        trained_cfg = cfg
        if cfg.mode != "linear":
            bs = int(out.timings.get("batch_size", cfg.batch_size))
            trained_cfg = cfg.with_(epochs=out.epochs_run, batch_size=bs)
        for key, value in {
            "trained": True,
            "phase": phase,
            "config": trained_cfg.to_dict(full=True),
            "n_train": plan.n_train,
            "planned_epochs": plan.epochs,
            "epochs_run": out.epochs_run,
            "best_epoch": out.best_epoch,
            "stopped": out.stopped,
            "averaged": out.averaged,
            "seconds": round(out.seconds, 3),
            "metrics": out.metrics,
            "thresholds": out.thresholds,
            "full_validation": plan.eval_idx is None,
            "ranking": out.ranking,
        }.items():
            trial.set_user_attr(key, value)
        if out.stopped == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            shutil.rmtree(folder, ignore_errors=True)
            state = "PRUNED"
        else:
            study.tell(trial, out.score)
            state = "COMPLETE"
            if studies.best_number(study) == n:
                self.best_score, self.best_cfg, self.best_n_train = (
                    out.score,
                    trained_cfg,
                    plan.n_train,
                )
            keep_best_folders(study, self.trial_dir, self.keep)  # the ensemble's candidates
        self.state.trials_done = len(studies.trained(study))
        self.save_state()
        self._emit(
            "trial_end",
            trial=n,
            state=state,
            score=out.score,
            best=self._best(),
            seconds=out.seconds,
            stopped=out.stopped,
            ranking=out.ranking,
        )
        return out

    def _trainer(self, cfg: TrialConfig) -> tuple[Callable[..., TrialOutcome], TrialConfig]:
        """The training function of ``cfg``'s mode and the configuration as it trains."""
        if cfg.mode == "linear":
            return functools.partial(train_linear, steps=self.space.linear_steps), cfg
        if toptune.applies(self.rt, cfg):
            return toptune.train_top_cached, toptune.effective_config(cfg)
        return train_trial, cfg

    def _fail(
        self, study: Any, trial: Any, folder: Path, error: str, shown: str | None = None
    ) -> None:
        """Record ``trial`` as failed with ``error`` (``shown``: the progress event's text)."""
        trial.set_user_attr("error", error)
        study.tell(trial, state=TrialState.FAIL)
        shutil.rmtree(folder, ignore_errors=True)
        err = error if shown is None else shown
        self._emit("trial_end", trial=trial.number, state="FAIL", error=err, best=self._best())

    def _skip(self, study: Any, trial: Any, cfg: TrialConfig | None, why: str) -> None:
        trial.set_user_attr("skipped", why)
        study.tell(trial, state=TrialState.PRUNED)
        config = cfg.to_dict() if cfg else None
        self._emit("trial_end", trial=trial.number, state="SKIPPED", config=config, why=why)

    # ---- the loop -------------------------------------------------------------------------

    def sync_best(self, study: Any) -> None:
        """Take the best trial so far from the study (resumed, or told by other workers)."""
        if studies.best_number(study) is not None:
            bt = studies.best_trial(study)
            self.best_score = bt.value
            self.best_cfg = TrialConfig.from_dict(bt.user_attrs["config"])
            self.best_n_train = int(bt.user_attrs.get("n_train", 0))

    def open_study(self) -> Any:
        return studies.open_study(
            self.rt.ws.db_url, self.state.study_name, self.state.seed, heartbeat=self.heartbeat
        )

    def run(self) -> SearchResult:
        study = self.open_study()
        for number in studies.fail_stale(study):
            shutil.rmtree(self.trial_dir(number), ignore_errors=True)
        studies.enqueue_defaults(
            study,
            default_configs(self.space, self.data.profile, **self._data_kw()),
            base_model=self.rt.base is not None,
            imbalanced=self.data.profile.imbalance >= IMBALANCE_RATIO,
            multi_label=self.data.multi_label,
        )
        if any(t.user_attrs.get("phase") == "final" for t in studies.trained(study)):
            self.state.final_done = True
        self.sync_best(study)  # resumed
        self._emit(
            "search_start",
            run_id=self.state.run_id,
            budget=self.budget.to_dict(),
            resumed=self.state.sessions > 1,
            trials_before=len(studies.trained(study)),
        )
        finished = self.state.phase == "done"
        if self.explore_with is not None and self.state.phase == "explore":
            stop = self.explore_with(self, study)
            self.sync_best(study)
        else:
            stop = self._explore(study)
        if not finished and stop != TRIALS_DONE and self.budget.timed and not self.budget.trials:
            self._final(study)
            self.state.final_done = True
        while studies.waiting(study):  # enqueued defaults that never ran
            self._skip(study, study.ask(), None, "search ended")
        number = studies.best_number(study)
        if number is None:
            why = studies.last_error(study)
            raise TrainingError(
                "no trial finished within the budget"
                + (f" (last error: {why})" if why else "; give it a larger --budget")
            )
        refit = self._refit(studies.best_trial(study))
        self.state.phase, self.state.stop_reason = "done", stop
        self.save_state()
        return SearchResult(
            best=studies.best_trial(study),
            folder=self.trial_dir(number),
            trials=len(studies.trained(study)),
            stop_reason=stop,
            refit=refit,
            refit_folder=self.refit_dir() if refit else None,
        )

    def _explore(self, study: Any) -> str:
        if self.state.phase != "explore":
            return self.state.stop_reason or BUDGET_REACHED
        skips = 0
        search_total = self.search_left(self.best_cfg)
        while True:
            reason = self._explore_stop(study, skips, search_total)
            if reason is not None:
                self.state.phase, self.state.stop_reason = "final", reason
                self.save_state()
                return reason
            trial = study.ask()
            cfg = self._suggest(trial)
            if trial.user_attrs.get("default") and cfg.mode == "finetune_top":
                # the trial's Optuna parameters keep the enqueued rule; its config (what the
                # final retraining and the package use) has the one that trained
                cfg = cfg.with_(resize=self._linear_resize(study, cfg))
            left = self.search_left(cfg)
            reserve = self._final_wanted(self.best_cfg or cfg, search_total)
            explore_left = left - reserve
            if self.best_cfg is None:  # a model first: at least half of what is left
                explore_left = max(explore_left, 0.5 * left)
            # a final retraining takes the epochs the time left holds; a refit has fixed epochs:
            # trials end (deadline) before its time
            limit = explore_left if self._best_full() and reserve > 0 else left
            kw = {"search_left": limit, "refit_left": left}
            kw.update(seed=self._seed(trial), heartbeat=self._beat)
            plan = None
            if not self.state.explore.get("n_train"):  # the first trial sets the fidelity
                share = explore_left / EXPLORE_FIRST_SHARE
                plan = self.planner.explore(cfg, share, total=explore_left, **kw)
            if plan is None:
                plan = self.planner.explore(cfg, explore_left, total=explore_left, **kw)
            if plan is None:
                self._skip(study, trial, cfg, "does not fit the time left")
                skips += 1
                continue
            skips = 0
            self.run_trial(study, trial, cfg, plan, "explore")

    def _linear_resize(self, study: Any, cfg: TrialConfig) -> str:
        """The resize rule of the best linear head on ``cfg``'s backbone and size (the
        default fine-tuning follows it: the frozen features already told which rule suits
        the images); ``cfg``'s own when there is none."""
        heads = [
            t
            for t in studies.trained(study)
            if t.state == TrialState.COMPLETE
            and t.user_attrs["config"]["mode"] == "linear"
            and t.user_attrs["config"]["backbone"] == cfg.backbone
            and t.user_attrs["config"]["image_size"] == cfg.image_size
        ]
        if self.rt.base is not None or not heads:
            return cfg.resize
        return min(heads, key=studies.rank_key).user_attrs["config"]["resize"]

    def _seed(self, trial: Any) -> int:
        return self.state.seed * 1000 + trial.number

    def _explore_stop(self, study: Any, skips: int, search_total: float) -> str | None:
        trained = studies.trained(study)
        if self.budget.trials is not None and len(trained) >= self.budget.trials:
            return TRIALS_DONE
        if studies.failures_in_a_row(study) >= MAX_FAILS:  # e.g. no backbone can be built
            return TRIALS_DONE if self.budget.trials is not None else BUDGET_REACHED
        if not self.budget.timed:
            return None
        if (
            self.budget.trials is None
            and self.spent() >= CONVERGE_MIN_SHARE * (self.budget.seconds or 0.0)
            and studies.converged(trained, CONVERGE_PATIENCE, CONVERGE_DELTA)
        ):
            return MODEL_CONVERGED
        explore_left = self.search_left() - self._final_wanted(self.best_cfg, search_total)
        if explore_left <= 0 or skips >= MAX_SKIPS:
            return BUDGET_REACHED
        return None

    def _final(self, study: Any) -> None:
        """Retrain the best configuration on all the data with the time that is left."""
        self.state.phase = "final"
        self.save_state()
        trained = studies.trained(study)
        if self.best_cfg is None or self.state.final_done:
            return
        bt = self._final_choice(study, trained)
        if int(bt.user_attrs.get("n_train", 0)) >= self.data.profile.n_train:
            return  # it saw every training image: refit on training + validation instead
        cfg = TrialConfig.from_dict(bt.user_attrs["config"])
        plan = self.planner.final(
            cfg,
            trained_on=int(bt.user_attrs.get("n_train", 0)),
            epochs_run=int(bt.user_attrs.get("epochs_run", 0)),
            search_left=self.search_left(cfg),
            heartbeat=self._beat,
        )
        if plan is None:
            return
        params = dict(bt.params)
        if self.rt.base is None:  # studies from before "resize" was searched: squash
            params["resize"] = cfg.resize
        study.enqueue_trial(params, user_attrs={"final": True})
        while True:  # enqueued defaults that never ran come first: close them
            trial = study.ask()
            if trial.user_attrs.get("final"):
                break
            self._skip(study, trial, None, "search ended")
        plan.seed = self._seed(trial)
        cfg = self._suggest(trial)
        if cfg.mode != "linear":
            cfg = cfg.with_(epochs=plan.epochs)
        self.run_trial(study, trial, cfg, plan, "final")

    def _final_choice(self, study: Any, trained: list[Any]) -> Any:
        """The trial whose configuration the final retraining uses: the best one, but a
        default configuration when exploration saw only part of the data and the best beats
        the defaults by less than ``FINAL_MARGIN`` (small-sample scores are noisy, and the
        defaults are known to train well on the whole)."""
        best = studies.best_trial(study)
        n = int(best.user_attrs.get("n_train", 0))
        defaults = [
            t for t in trained if t.user_attrs.get("default") and t.state == TrialState.COMPLETE
        ]
        if n >= self.data.profile.n_train or best.number in {t.number for t in defaults}:
            return best
        if not defaults:
            return best
        top = max(defaults, key=lambda t: t.value)
        return best if best.value - top.value >= FINAL_MARGIN else top

    def _refit(self, bt: Any) -> dict[str, Any] | None:
        """Retrain the chosen trial ``bt``'s configuration on the training and validation
        images (see the module's *refit*). Returns what it trained on, ``None`` when there is
        no refit: ``bt`` saw part of the training images, the time left does not hold it, or
        it did not finish (deadline, divergence, error)."""
        done = self.state.refit
        if done.get("trial") == bt.number and (self.refit_dir() / "best.safetensors").exists():
            return done  # resumed after the refit
        if int(bt.user_attrs.get("n_train", 0)) < self.data.profile.n_train:
            return None
        a = bt.user_attrs
        cfg = TrialConfig.from_dict(a["config"])
        # its training replayed to the epoch whose weights it kept: the schedule it planned,
        # or, cut by its deadline, the one its clock compressed into the epochs it ran
        epochs = max(1, int(a.get("best_epoch", 1)))
        ran = int(a.get("epochs_run", epochs))
        plan = self.planner.refit(
            cfg,
            epochs=epochs,
            search_left=self.search_left(cfg),
            schedule_epochs=ran if a.get("stopped") == "deadline" else a.get("planned_epochs"),
            averaged=bool(a.get("averaged", False)),
            seed=self._seed(bt),
            heartbeat=self._beat,
        )
        if plan is None:
            self._emit("refit_skipped", trial=bt.number, why="does not fit the time left")
            return None
        self.state.phase = "refit"
        self.save_state()
        train, cfg = self._trainer(cfg if cfg.mode == "linear" else cfg.with_(epochs=epochs))
        images = self.data.profile.n_train + len(self.data.val)
        info = {"phase": "refit", "config": cfg.to_dict(), "n_train": images, "epochs": epochs}
        self._emit("trial_start", trial=f"{bt.number}r", **info, best=self._best())
        folder = self.refit_dir()
        shutil.rmtree(folder, ignore_errors=True)
        try:
            out = train(self.rt, cfg, plan, folder, None)
        except Exception as exc:  # noqa: BLE001 - the trial's own weights remain: package them
            out, why = None, f"{type(exc).__name__}: {exc}"
        else:
            why = None if out.score is not None and out.stopped == "done" else out.stopped
        end = {"trial": f"{bt.number}r", "config": cfg.to_dict(), "best": self._best()}
        if why is not None:
            shutil.rmtree(folder, ignore_errors=True)
            self._emit("trial_end", **end, state="SKIPPED", why=f"refit not kept: {why}")
            return None
        assert out is not None
        self.state.refit = {
            "trial": bt.number,
            "images": images,
            "epochs": epochs,
        }
        self.save_state()
        self._emit("trial_end", **end, state="REFIT", seconds=out.seconds)
        return self.state.refit
