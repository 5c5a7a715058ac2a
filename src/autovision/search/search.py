"""The Optuna search under a budget.

The study (TPE sampler seeded, successive-halving pruner) lives in the workspace database.
Strong defaults are enqueued first. A timed search has two phases:

1. *explore*: trials drawn by TPE, each on as much training data as fits its share of the
   exploration time (a stratified subsample when the data set is large), pruned on their
   intermediate validation scores, stopped early when trials stop improving
   (``MODEL_CONVERGED``);
2. *final*: the best configuration retrained on all training data with as many epochs as the
   rest of the budget holds (capped), so most of a large budget goes to the promising model.

Every trial gets a deadline and is started only if its estimated cost fits the time left; the
export of the package is reserved for. With ``--trials N`` (no time budget) each trial uses all
the data and its own epochs, and the search is reproducible for a seed.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autovision.errors import TrainingError
from autovision.search import planner
from autovision.search.budget import Budget
from autovision.search.linear import train_linear
from autovision.search.space import (
    IMBALANCE_RATIO,
    SearchSpace,
    TrialConfig,
    default_configs,
    params_for,
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
FINAL_SHARE_MAX = 0.75  # of the search time, for the final retraining
MAX_SKIPS = 12  # consecutive drawn configurations that do not fit the time left
PRUNE_WARMUP = 4  # finished trials before pruning starts


class WarmPruner(optuna.pruners.BasePruner):
    """Successive halving that only prunes once ``warmup_trials`` trials have finished
    (Optuna's own pruner would stop the second trial as soon as it trails the first)."""

    def __init__(self, inner: Any, warmup_trials: int) -> None:
        self.inner = inner
        self.warmup_trials = warmup_trials

    def prune(self, study: Any, trial: Any) -> bool:
        from optuna.trial import TrialState

        decision = self.inner.prune(study, trial)  # records the rung values either way
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        finished = sum(1 for t in done if t.user_attrs.get("trained"))
        return bool(decision) and finished >= self.warmup_trials


@dataclass
class SearchResult:
    best: Any  # optuna FrozenTrial
    folder: Path
    trials: int
    stop_reason: str


def _study(rt: Runtime, state: RunState) -> Any:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=state.seed,
            n_startup_trials=4,
            multivariate=True,
            group=True,
        )
    pruner = WarmPruner(
        optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
        warmup_trials=PRUNE_WARMUP,
    )
    storage = optuna.storages.RDBStorage(rt.ws.db_url)
    return optuna.create_study(
        study_name=state.study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


class Search:
    """One run's search loop; :meth:`run` returns the best trial."""

    def __init__(
        self,
        rt: Runtime,
        state: RunState,
        space: SearchSpace,
        budget: Budget,
        *,
        progress: Progress | None = None,
        export_reserve: Callable[[TrialConfig | None], float] = lambda cfg: 5.0,
    ) -> None:
        self.rt, self.state, self.space, self.budget = rt, state, space, budget
        self.progress = progress
        self.export_reserve = export_reserve
        self.session_start = time.monotonic()
        self.spent_before = state.spent_s
        self.cost = planner.CostModel(gpu=rt.gpu, state=state.costs)
        self.data = rt.data
        self.folder = state.dir(rt.ws) / "trials"
        self._last_save = 0.0
        self.best_score = -np.inf
        self._best_cfg: TrialConfig | None = None

    # ---- time -----------------------------------------------------------------------------

    def spent(self) -> float:
        return self.spent_before + (time.monotonic() - self.session_start)

    def time_left(self) -> float | None:
        return None if self.budget.seconds is None else self.budget.seconds - self.spent()

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

    # ---- study helpers --------------------------------------------------------------------

    def _suggest(self, trial: Any) -> TrialConfig:
        base = self.rt.base
        return suggest(
            trial,
            self.space,
            self.data.profile,
            multi_label=self.data.multi_label,
            gpu=self.rt.gpu,
            base_backbone=base.backbone if base else None,
            base_size=base.input_size if base else None,
        )

    def _enqueue_defaults(self, study: Any) -> None:
        if study.trials:
            return
        base = self.rt.base
        for cfg in default_configs(
            self.space,
            self.data.profile,
            multi_label=self.data.multi_label,
            gpu=self.rt.gpu,
            base_backbone=base.backbone if base else None,
            base_size=base.input_size if base else None,
        ):
            params = params_for(
                cfg,
                base_model=base is not None,
                imbalanced=self.data.profile.imbalance >= IMBALANCE_RATIO,
                multi_label=self.data.multi_label,
            )
            study.enqueue_trial(params, user_attrs={"default": True})

    def _fail_stale(self, study: Any) -> None:
        """Trials left RUNNING by a killed process will never finish: mark them failed."""
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    @staticmethod
    def trained(study: Any) -> list[Any]:
        return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("trained")]

    def trial_dir(self, number: int) -> Path:
        return self.folder / f"{number:04d}"

    # ---- planning -------------------------------------------------------------------------

    def _n_decode(self, cfg: TrialConfig) -> int:
        """Images still to decode for ``cfg``'s size (0 when its pixel cache exists)."""
        from autovision.search.cache import pixels_path
        from autovision.search.trainer import preprocessing_for

        spec = preprocessing_for(cfg.backbone, cfg.image_size)
        return (
            0 if pixels_path(self.rt.ws, self.data.items, spec).exists() else len(self.data.items)
        )

    def _n_embed(self, cfg: TrialConfig, n_train: int) -> int:
        from autovision.search.linear import embedded_rows

        return max(0, len(self.data.val) + n_train - embedded_rows(self.rt, cfg))

    def _eval_idx(self, final: bool) -> np.ndarray | None:
        """Validation images a trial evaluates: in a timed exploration at most
        ``SELECTION_VAL_MAX`` (the ones that rank trials), else all of them."""
        if final or not self.budget.timed:
            return None
        return self.data.val_select if len(self.data.val_select) < len(self.data.val) else None

    def final_wanted(self, cfg: TrialConfig | None, search_total: float) -> float:
        """Seconds kept for retraining ``cfg`` on all the data in the final phase."""
        if cfg is None or not self.budget.timed or self.budget.trials is not None:
            return 0.0
        n_val, n_tr = len(self.data.val), self.data.profile.n_train
        if cfg.mode == "linear":
            need = self.cost.trial_seconds(
                cfg, n_train=n_tr, n_eval=n_val, epochs=1, n_embed=self._n_embed(cfg, n_tr)
            )
        else:
            epochs = max(self.space.epochs[1], cfg.epochs)
            need = self.cost.trial_seconds(cfg, n_train=n_tr, n_eval=n_val, epochs=epochs)
        return min(need, FINAL_SHARE_MAX * max(0.0, search_total))

    def plan_explore(self, cfg: TrialConfig, seconds: float, number: int) -> TrialPlan | None:
        """All the data in a count-budget search; in a timed one the most data that fits
        ``seconds`` (``None``: nothing fits, the trial is not started)."""
        eval_idx = self._eval_idx(final=False)
        n_eval = len(self.data.val) if eval_idx is None else len(eval_idx)
        n_tr = self.data.profile.n_train
        patience = max(3, cfg.epochs // 3)
        seed = self._seed(number)
        if not self.budget.timed:
            return TrialPlan(n_tr, cfg.epochs, None, eval_idx, patience, seed, self._beat)
        fid = planner.fit_fidelity(
            self.cost,
            cfg,
            seconds=seconds,
            n_train_max=n_tr,
            n_eval=n_eval,
            n_decode=self._n_decode(cfg),
            n_embedded=max(0, len(self.data.val) + n_tr - self._n_embed(cfg, n_tr)),
            n_val=len(self.data.val),
        )
        if fid is None:
            return None
        limit = min(1.5 * fid.seconds + 5.0, max(0.0, self._search_left()))
        return TrialPlan(
            fid.n_train, fid.epochs, time.monotonic() + limit, eval_idx, patience, seed, self._beat
        )

    def _beat(self) -> None:
        self.save_state(force=False)

    def _seed(self, number: int) -> int:
        return self.state.seed * 1000 + number

    def _search_left(self) -> float:
        """Seconds left for trials (the package export is kept aside)."""
        left = self.time_left()
        return np.inf if left is None else left - self.export_reserve(self._best_cfg)

    # ---- one trial ------------------------------------------------------------------------

    def run_trial(
        self, study: Any, trial: Any, cfg: TrialConfig, plan: TrialPlan, phase: str
    ) -> TrialOutcome | None:
        from optuna.trial import TrialState

        folder = self.trial_dir(trial.number)
        shutil.rmtree(folder, ignore_errors=True)
        prune = phase == "explore" and cfg.mode != "linear"
        self._emit(
            "trial_start",
            trial=trial.number,
            phase=phase,
            config=cfg.to_dict(),
            n_train=plan.n_train,
            epochs=plan.epochs,
            best=self._best_or_none(),
        )

        def on_epoch(epoch: int, score: float) -> bool:
            self.save_state(force=False)
            self._emit(
                "epoch",
                trial=trial.number,
                epoch=epoch,
                epochs=plan.epochs,
                score=score,
                best=self._best_or_none(),
            )
            if not prune:
                return False
            trial.report(score, epoch)
            return trial.should_prune()

        train = train_linear if cfg.mode == "linear" else train_trial
        kwargs = {"steps": self.space.linear_steps} if cfg.mode == "linear" else {}
        try:
            out = train(self.rt, cfg, plan, folder, on_epoch, **kwargs)
        except TimeoutError:
            out = None
        except TrainingError:
            raise
        except (RuntimeError, ValueError) as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            shutil.rmtree(folder, ignore_errors=True)
            self._emit(
                "trial_end",
                trial=trial.number,
                state="FAIL",
                error=str(exc),
                best=self._best_or_none(),
            )
            return None
        self._record_costs(cfg, out)
        if out is None or out.score is None:
            trial.set_user_attr("skipped", "deadline")
            study.tell(trial, state=TrialState.PRUNED)
            shutil.rmtree(folder, ignore_errors=True)
            self._emit("trial_end", trial=trial.number, state="PRUNED", best=self._best_or_none())
            return out
        trained_cfg = cfg.with_(epochs=out.epochs_run) if cfg.mode != "linear" else cfg
        for key, value in {
            "trained": True,
            "phase": phase,
            "config": trained_cfg.to_dict(full=True),
            "n_train": plan.n_train,
            "planned_epochs": plan.epochs,
            "epochs_run": out.epochs_run,
            "best_epoch": out.best_epoch,
            "stopped": out.stopped,
            "seconds": round(out.seconds, 3),
            "metrics": out.metrics,
            "thresholds": out.thresholds,
            "full_validation": plan.eval_idx is None,
        }.items():
            trial.set_user_attr(key, value)
        if out.stopped == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            shutil.rmtree(folder, ignore_errors=True)
            state = "PRUNED"
        else:
            previous = self._best_number(study)
            study.tell(trial, out.score)
            state = "COMPLETE"
            if out.score > self.best_score:
                self.best_score = out.score
                self._best_cfg = trained_cfg
                if previous is not None and previous != trial.number:
                    shutil.rmtree(self.trial_dir(previous), ignore_errors=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        self.state.trials_done = len(self.trained(study))
        self.save_state()
        self._emit(
            "trial_end",
            trial=trial.number,
            state=state,
            score=out.score,
            best=self._best_or_none(),
            seconds=out.seconds,
            stopped=out.stopped,
        )
        return out

    def _record_costs(self, cfg: TrialConfig, out: TrialOutcome | None) -> None:
        while self.rt.measured:
            _, seconds = self.rt.measured.popitem()
            self.cost.observe_decode(seconds, len(self.data.items))
        if out is not None:
            self.cost.observe(cfg, out.timings)
        self.state.costs = self.cost.to_dict()

    def _best_number(self, study: Any) -> int | None:
        try:
            return study.best_trial.number
        except ValueError:
            return None

    def _best_or_none(self) -> float | None:
        return None if self.best_score == -np.inf else float(self.best_score)

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> SearchResult:
        from optuna.trial import TrialState

        study = _study(self.rt, self.state)
        self._fail_stale(study)
        self._enqueue_defaults(study)
        if (number := self._best_number(study)) is not None:
            bt = study.best_trial
            self.best_score = bt.value
            self._best_cfg = TrialConfig.from_dict(bt.user_attrs["config"])
        self._emit(
            "search_start",
            run_id=self.state.run_id,
            budget=self.budget.to_dict(),
            resumed=self.state.sessions > 1,
            trials_before=len(self.trained(study)),
        )
        finished = self.state.phase == "done"
        stop = self._explore(study)
        if not finished and stop != TRIALS_DONE and self.budget.timed and not self.budget.trials:
            self._final(study)
        self._drain(study)
        number = self._best_number(study)
        if number is None:
            failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            why = failed[-1].user_attrs.get("error") if failed else None
            raise TrainingError(
                "no trial finished within the budget"
                + (f" (last error: {why})" if why else "; give it a larger --budget")
            )
        self.state.phase = "done"
        self.state.stop_reason = stop
        self.save_state()
        return SearchResult(
            best=study.best_trial,
            folder=self.trial_dir(number),
            trials=len(self.trained(study)),
            stop_reason=stop,
        )

    def _explore(self, study: Any) -> str:
        if self.state.phase != "explore":
            return self.state.stop_reason or BUDGET_REACHED
        skips = 0
        search_total = self._search_left()
        while True:
            reason = self._explore_stop(study, skips, search_total)
            if reason is not None:
                self.state.phase = "final"
                self.state.stop_reason = reason
                self.save_state()
                return reason
            trained = self.trained(study)
            explore_left = self._search_left() - self.final_wanted(self._best_cfg, search_total)
            trial = study.ask()
            cfg = self._suggest(trial)
            seconds = explore_left / (2 if not trained else max(2, 6 - len(trained)))
            plan = self.plan_explore(cfg, min(seconds, explore_left), trial.number)
            if plan is None:
                self._skip(study, trial, cfg)
                skips += 1
                continue
            skips = 0
            self.run_trial(study, trial, cfg, plan, "explore")

    def _explore_stop(self, study: Any, skips: int, search_total: float) -> str | None:
        trained = self.trained(study)
        if self.budget.trials is not None and len(trained) >= self.budget.trials:
            return TRIALS_DONE
        if not self.budget.timed:
            return None
        if self.budget.trials is None and self._converged(trained):
            return MODEL_CONVERGED
        explore_left = self._search_left() - self.final_wanted(self._best_cfg, search_total)
        if explore_left <= 0 or skips >= MAX_SKIPS:
            return BUDGET_REACHED
        return None

    def _skip(self, study: Any, trial: Any, cfg: TrialConfig | None, why: str = "") -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("skipped", why or "does not fit the time left")
        study.tell(trial, state=TrialState.PRUNED)
        self._emit(
            "trial_end",
            trial=trial.number,
            state="SKIPPED",
            config=cfg.to_dict() if cfg else None,
            best=self._best_or_none(),
        )

    def _drain(self, study: Any) -> None:
        """Close enqueued trials that never ran, so the study holds no stale work."""
        from optuna.trial import TrialState

        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            self._skip(study, study.ask(), None, "search ended")

    def _converged(self, trained: list[Any]) -> bool:
        scored = [t for t in trained if t.value is not None]
        if len(scored) <= CONVERGE_PATIENCE:
            return False
        best_i, best_v = 0, -np.inf
        for i, t in enumerate(scored):
            if t.value > best_v + CONVERGE_DELTA:
                best_i, best_v = i, t.value
        return len(scored) - 1 - best_i >= CONVERGE_PATIENCE

    def _final(self, study: Any) -> None:
        """Retrain the best configuration on all the data with the time that is left."""
        self.state.phase = "final"
        self.save_state()
        if self._best_cfg is None or any(
            t.user_attrs.get("phase") == "final" for t in self.trained(study)
        ):
            return
        bt = study.best_trial
        cfg = self._best_cfg
        n_tr, n_val = self.data.profile.n_train, len(self.data.val)
        full_data = bt.user_attrs.get("n_train", 0) >= n_tr
        left = self._search_left()
        if cfg.mode == "linear":
            est = self.cost.trial_seconds(
                cfg, n_train=n_tr, n_eval=n_val, epochs=1, n_embed=self._n_embed(cfg, n_tr)
            )
            if full_data or est > left:
                return
            epochs = 1
        else:
            fit = planner.epochs_that_fit(
                self.cost,
                cfg,
                seconds=left,
                n_train=n_tr,
                n_eval=n_val,
                n_decode=self._n_decode(cfg),
            )
            epochs = min(max(self.space.epochs[1], cfg.epochs), fit)
            ran = bt.user_attrs.get("epochs_run", 0)
            if epochs < min(3, cfg.epochs) or (full_data and epochs <= ran):
                return
        study.enqueue_trial(dict(bt.params), user_attrs={"final": True})
        while True:  # enqueued defaults that never ran come first: close them
            trial = study.ask()
            if trial.user_attrs.get("final"):
                break
            self._skip(study, trial, None, "search ended")
        cfg = self._suggest(trial)
        if cfg.mode != "linear":
            cfg = cfg.with_(epochs=epochs)
        plan = TrialPlan(
            n_train=n_tr,
            epochs=epochs,
            deadline=time.monotonic() + max(0.0, left),
            eval_idx=None,
            patience=max(4, epochs // 3),
            seed=self._seed(trial.number),
            heartbeat=self._beat,
        )
        self.run_trial(study, trial, cfg, plan, "final")
