"""Cross-validated ranking: configurations ranked by k-fold CV when validation cannot rank them.

A validation split of 20-odd images scores every good configuration at 1.0: it cannot tell
them apart, and the search would package whichever came first. With ``--cv auto`` (the
default) a run whose smallest label has fewer than :data:`MIN_VAL_PER_LABEL` validation
images ranks its ``linear`` trials (a logistic head on a frozen backbone's cached
embeddings) by stratified k-fold cross-validation over the training *and* validation images
the trial saw, duplicate groups inside one fold (:mod:`autovision.data.folds`); ``on``
always does, ``off`` never (validation ranks, as before). Each fold fits the trial's head
(its L2 penalty, label smoothing and class weights) on the other folds for up to the trial's
L-BFGS rounds (stopped, like the trial, after 2 rounds without improvement), scored on its
own fold after each round; the round count whose mean score over the folds is best (ties:
the lowest mean log loss) is the configuration's. The study is told that mean, the refit on
all labelled images runs that many rounds, and the mean and the spread over the folds are
reported (``train --json``'s ``ranking``, the progress lines).

Every configuration sees the same folds (seeded by the run's seed), so their differences are
paired. The folds are repeated with new seeds (up to ``repeats``) while the time a
configuration may take (:data:`TIME_SHARE` of the search time left; every repeat in an
untimed run) holds another; the first always runs (5 folds of a head on 150 to 1,200
Lite0 embeddings: 0.5 to 5 s on 2 busy CPU cores). Image trials (fine-tuning) are still
scored on validation; both scores estimate the accuracy on unseen images and compete in one
study.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autovision.data.folds import duplicate_groups_of, fold_assignment, group_ids
from autovision.errors import TrainingError
from autovision.search import metrics
from autovision.search.cache import EmbeddingCache
from autovision.search.space import TrialConfig
from autovision.search.trainer import Runtime, TrialOutcome, TrialPlan, improves

MODES = ("auto", "on", "off")
FOLDS = 5
REPEATS = 3
MIN_VAL_PER_LABEL = 50  # auto: CV ranks when the rarest label has fewer validation images
TIME_SHARE = 0.05  # of the search time left that one configuration's repeated folds may take
PATIENCE = 2  # rounds without improvement that end a fold's fit (the linear trial's rule)
TIE = 1e-9


@dataclass(frozen=True)
class CVSettings:
    """``train --cv MODE --cv-folds K``: when to cross-validate, how many folds, and at most
    how many repeats of them."""

    mode: str = "auto"
    folds: int = FOLDS
    repeats: int = REPEATS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TrainingError(f"unknown --cv {self.mode!r}; expected one of {', '.join(MODES)}")
        if int(self.folds) < 2:
            raise TrainingError(f"--cv-folds must be at least 2 (got {self.folds})")
        if int(self.repeats) < 1:
            raise TrainingError(f"cross-validation repeats must be at least 1 (got {self.repeats})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> CVSettings:
        d = d or {}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def validation_per_label(data: Any) -> int:
    """Validation images of the rarest label (0 when a label has none)."""
    y = np.asarray(data.y_val)
    counts = y.sum(0) if y.ndim == 2 else np.bincount(y, minlength=len(data.labels))
    return int(counts.min()) if len(counts) else 0


@dataclass
class FoldScores:
    """One configuration's cross-validated scores: one per fold of every repeat, at the
    chosen number of L-BFGS ``rounds``."""

    measure: str
    folds: int
    repeats: int
    rounds: int
    scores: list[float]
    losses: list[float]
    seconds: float = 0.0
    images: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def sd(self) -> float:
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        loss = np.asarray(self.losses, float)
        return {
            "measure": self.measure,
            "folds": self.folds,
            "repeats": self.repeats,
            "rounds": self.rounds,
            "images": self.images,
            "mean": round(self.mean, 6),
            "sd": round(self.sd, 6),
            "loss_mean": round(float(loss.mean()), 6) if len(loss) else None,
            "loss_sd": round(float(loss.std(ddof=1)), 6) if len(loss) > 1 else 0.0,
            "seconds": round(self.seconds, 3),
        }


def _loss(task: str, y: np.ndarray, probs: np.ndarray, m: dict[str, float]) -> float:
    """Log loss (multi-label: mean binary cross-entropy), the tie-break of equal scores."""
    if task != "multi-label":
        return float(m["log_loss"])
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def best_round(scores: np.ndarray, losses: np.ndarray) -> int:
    """Index of the round (column of [folds, rounds] arrays) with the best mean score, ties
    broken by the lowest mean loss, then the fewest rounds."""
    s, lo = scores.mean(0), losses.mean(0)
    tied = np.flatnonzero(s >= s.max() - TIE)
    return int(tied[np.argmin(lo[tied])])


@dataclass
class Ranking:
    """How a run ranks its configurations (see the module docstring); one per search."""

    rt: Runtime
    settings: CVSettings = field(default_factory=CVSettings)
    seed: int = 0
    _groups: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        per_label = validation_per_label(self.rt.data)
        mode = self.settings.mode
        self.active = mode == "on" or (mode == "auto" and per_label < MIN_VAL_PER_LABEL)
        if mode == "auto":
            self.why = (
                f"{per_label} validation images for the rarest label "
                f"({'<' if self.active else '>='} {MIN_VAL_PER_LABEL})"
            )
        else:
            self.why = f"--cv {mode}"

    def applies(self, cfg: TrialConfig) -> bool:
        return self.active and cfg.mode == "linear"

    def describe(self) -> dict[str, Any]:
        """The run's ranking, without the per-trial figures."""
        return {
            "measure": "cv" if self.active else "validation",
            "score": metrics.PRIMARY[self.rt.data.task],
            "cv": self.settings.mode,
            "folds": self.settings.folds if self.active else None,
            "repeats": self.settings.repeats if self.active else None,
            "why": self.why,
        }

    def rescore(
        self,
        cfg: TrialConfig,
        plan: TrialPlan,
        out: TrialOutcome | None,
        *,
        steps: int,
        seconds: float = np.inf,
    ) -> TrialOutcome | None:
        """``out`` with its score replaced by ``cfg``'s cross-validated mean and its best
        round by the rounds the folds chose (unchanged when CV does not apply)."""
        if out is None or out.score is None or plan.refit or not self.applies(cfg):
            return out
        if out.stopped in ("pruned", "diverged"):
            return out
        try:
            cv = self.cross_validate(cfg, plan.n_train, steps=steps, seconds=seconds)
        except (TrainingError, RuntimeError, ValueError) as exc:  # validation ranks it then
            return dataclasses.replace(out, ranking={"error": f"{type(exc).__name__}: {exc}"})
        # the planner learns one repeat's cost per image (the first repeat always runs)
        timings = {**out.timings, "cv_s": cv.seconds / cv.repeats, "cv_images": cv.images}
        ranking = {**cv.to_dict(), "validation": round(float(out.score), 6)}
        return dataclasses.replace(
            out,
            score=cv.mean,
            best_epoch=cv.rounds,
            seconds=out.seconds + cv.seconds,
            timings=timings,
            ranking=ranking,
        )

    def _group_ids(self, n_train: int) -> np.ndarray:
        if n_train not in self._groups:
            items = self.rows_items(n_train)
            groups = duplicate_groups_of(items)
            self._groups[n_train] = group_ids(len(items), [it.id for it in items], groups)
        return self._groups[n_train]

    def rows_items(self, n_train: int) -> list[Any]:
        """The items of the embedding rows a trial on ``n_train`` images saw (validation,
        then training images in ``data.order``)."""
        data = self.rt.data
        return [*data.val, *(data.train[i] for i in data.order[:n_train])]

    def targets(self, n_train: int) -> np.ndarray:
        data = self.rt.data
        return np.concatenate([data.y_val, data.y_train[data.order[:n_train]]])

    def embeddings(self, cfg: TrialConfig, n_train: int) -> np.ndarray:
        """The cached embeddings of those rows (the trial computed them)."""
        from autovision.search.linear import _cache_args

        path = EmbeddingCache.path_for(*_cache_args(self.rt, cfg))
        n = len(self.rt.data.val) + n_train
        if EmbeddingCache.rows_done(path) < n:
            raise TrainingError(f"cross-validation: {path} holds fewer than {n} embeddings")
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[:n], np.float32)

    def cross_validate(
        self,
        cfg: TrialConfig,
        n_train: int,
        *,
        steps: int,
        seconds: float = np.inf,
        x: np.ndarray | None = None,
    ) -> FoldScores:
        """``cfg``'s head scored by k-fold CV over the validation and first ``n_train``
        training images (``x``: their embeddings, default: the cache's). On CPU the folds
        run on one thread: their operations are too small to gain from more, and threads
        that wait on a busy core make them many times slower (16 s instead of 3 s for 150
        images on 2 shared cores)."""
        threads = torch.get_num_threads()
        if not self.rt.gpu:
            torch.set_num_threads(1)
        try:
            return self._cross_validate(cfg, n_train, steps=steps, seconds=seconds, x=x)
        finally:
            torch.set_num_threads(threads)

    def _cross_validate(
        self,
        cfg: TrialConfig,
        n_train: int,
        *,
        steps: int,
        seconds: float,
        x: np.ndarray | None,
    ) -> FoldScores:
        from autovision.search.linear import CHUNK_STEPS, LogisticHead

        t0 = time.monotonic()
        data, dev = self.rt.data, self.rt.device
        task = data.task
        x_all = torch.from_numpy(self.embeddings(cfg, n_train) if x is None else x).to(dev)
        y = self.targets(n_train)
        y_t = torch.from_numpy(y).to(dev)
        gid = self._group_ids(n_train)
        w = torch.from_numpy(data.class_weights()).to(dev) if cfg.imbalance != "none" else None
        rounds = max(1, steps // CHUNK_STEPS)
        deadline = t0 + TIME_SHARE * seconds if np.isfinite(seconds) else np.inf
        scores: list[list[float]] = []
        losses: list[list[float]] = []
        repeats, k = 0, 0
        for r in range(self.settings.repeats):
            started = time.monotonic()
            fold = fold_assignment(y, gid, self.settings.folds, self.seed * 1000 + r)
            k = len(np.unique(fold))
            for f in range(k):
                test = torch.from_numpy(fold == f).to(dev)
                head = LogisticHead(x_all[~test], y_t[~test], data, cfg, w)
                z = head.standardise(x_all[test])
                y_test = y[(fold == f)]
                row_s, row_l = [], []
                best = (-np.inf, -1)
                best_loss = np.inf
                for c in range(rounds):
                    head.step()
                    with torch.no_grad():
                        logits = head.lin(z)
                        act = torch.sigmoid if data.multi_label else lambda a: torch.softmax(a, 1)
                        probs = act(logits).double().cpu().numpy()
                    s, m = metrics.evaluate(task, y_test, probs)
                    row_s.append(float(s))
                    row_l.append(_loss(task, y_test, probs, m))
                    if improves(row_s[-1], row_l[-1], best, best_loss):
                        best, best_loss = (row_s[-1], c), row_l[-1]
                    if c - best[1] >= PATIENCE:  # as the trial stops: later rounds
                        break  # score as its last (the head no longer moves)
                pad = rounds - len(row_s)
                scores.append(row_s + row_s[-1:] * pad)
                losses.append(row_l + row_l[-1:] * pad)
            repeats += 1
            took = time.monotonic() - started
            if time.monotonic() + took > deadline:
                break
        s_arr, l_arr = np.asarray(scores), np.asarray(losses)
        c = best_round(s_arr, l_arr)
        return FoldScores(
            measure=metrics.PRIMARY[task],
            folds=k,
            repeats=repeats,
            rounds=c + 1,
            scores=s_arr[:, c].tolist(),
            losses=l_arr[:, c].tolist(),
            seconds=time.monotonic() - t0,
            images=len(y),
        )


def summary(ranking: Ranking | None, trials: list[Any]) -> dict[str, Any]:
    """``train --json``'s ``ranking``: the run's measure, folds and repeats, and each trained
    trial's mean and spread (cross-validated trials) or validation score."""
    out = (
        ranking.describe()
        if ranking is not None
        else {"measure": "validation", "cv": "off", "folds": None, "repeats": None}
    )
    rows = []
    for t in trials:
        if t.value is None:
            continue
        r = t.user_attrs.get("ranking")
        if r and "mean" not in r:  # the cross-validation failed: validation ranked it
            r = None
        row = {"trial": t.number, "mode": t.user_attrs.get("config", {}).get("mode")}
        if r:
            row |= {
                "measure": "cv",
                "mean": r["mean"],
                "sd": r["sd"],
                "folds": r["folds"],
                "repeats": r["repeats"],
                "rounds": r["rounds"],
                "loss_mean": r.get("loss_mean"),
                "validation": r.get("validation"),
                "seconds": r.get("seconds"),
            }
        else:
            row |= {"measure": "validation", "mean": round(float(t.value), 6), "sd": None}
        rows.append(row)
    out["trials"] = rows
    return out
