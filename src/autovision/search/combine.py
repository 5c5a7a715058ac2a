"""The search's last step before packaging: the chosen trial alone, a weighted ensemble of
the best trials, and/or test-time horizontal flips, within an inference-cost bound.

1. *ensemble* (``auto``): greedy ensemble selection (:mod:`.ensemble`) over the validation
   probabilities of the best :data:`CANDIDATES` trials that share the chosen trial's input
   size and resize rule; kept only when it beats the chosen trial by the margin.
2. *flips* (``tta="auto"``): the mean of the model's probabilities on each validation image
   and on its mirror image, kept only when it helps on the ranking measure (a higher score,
   or the same and :data:`TTA_LOSS_MARGIN` less log loss). ``tta="off"`` for data where a
   mirror image means something else (text, arrows, left and right).
3. *cost*: ONNX Runtime's median time per image of the combined graph against the chosen
   trial's, same batch; over ``max_inference_cost`` the lowest-weight members go first, then
   the flips (a mix that no longer beats the single model by the margin is dropped).

The members' weights are their trials' (trained on the training images), but the chosen
trial's are its refit's when there is one, as for a single model. See
:mod:`autovision.models.ensemble` for the graph.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from optuna.trial import TrialState

from autovision.errors import TrainingError
from autovision.models.ensemble import Member, architecture, combine, inference_times
from autovision.search import ensemble as selection
from autovision.search import study as studies
from autovision.search.space import TrialConfig
from autovision.search.trainer import Runtime, load_checkpoint, predict, preprocessing_for

CANDIDATES = 5  # best trials kept for ensemble selection
TTA_LOSS_MARGIN = 0.002  # nats of log loss flips must save when the measure ties
COST_TOLERANCE = 0.10  # measurement noise allowed over the inference-cost bound
RESERVE_MODELS = 3  # package exports' worth of time kept for this step and the package
CHOICES = ("auto", "off")


@dataclass(frozen=True)
class Settings:
    """``train(ensemble=, tta=, max_inference_cost=)``."""

    ensemble: str = "auto"
    tta: str = "auto"
    max_inference_cost: float = 2.0

    def __post_init__(self) -> None:
        for name in ("ensemble", "tta"):
            if getattr(self, name) not in CHOICES:
                raise TrainingError(
                    f"--{name} must be one of {', '.join(CHOICES)}, not {getattr(self, name)!r}"
                )
        if not self.max_inference_cost > 0:
            raise TrainingError(
                f"--max-inference-cost must be above 0, not {self.max_inference_cost}"
            )

    @property
    def keep(self) -> int:
        """Trial checkpoints the search keeps (the best ones)."""
        return CANDIDATES if self.ensemble == "auto" else 1

    @property
    def reserve_models(self) -> int:
        """Package exports' worth of time the search keeps aside at its end."""
        return RESERVE_MODELS if "auto" in (self.ensemble, self.tta) else 1


@dataclass
class Choice:
    """What the package holds: ``model`` (a logits model, the :class:`CombinedModel` when
    ``architecture`` is set), validation probabilities on every validation image, and what
    ``model.json`` and ``train --json`` say of the ensemble and the flips."""

    model: Any
    probs: np.ndarray
    ensemble: dict[str, Any]
    tta: dict[str, Any]
    architecture: dict[str, Any] | None = None
    cost: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {**self.ensemble, "tta": self.tta, "inference_cost": self.cost}


@dataclass
class _Candidate:
    trial: Any
    cfg: TrialConfig
    model: Any
    probs: np.ndarray  # every validation image
    flipped: np.ndarray | None = None


def keep_best_folders(study: Any, folder_of: Callable[[int], Path], keep: int) -> None:
    """Delete the checkpoints of completed trials outside the ``keep`` best (the study's best
    is always kept)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    done.sort(key=studies.rank_key)
    kept = {t.number for t in done[: max(1, keep)]}
    for t in done:
        if t.number not in kept:
            shutil.rmtree(folder_of(t.number), ignore_errors=True)


def choose(
    rt: Runtime,
    study: Any,
    best: Any,
    folder_of: Callable[[int], Path],
    *,
    settings: Settings,
    refit_weights: dict[str, Any] | None = None,
    time_left: Callable[[], float | None] = lambda: None,
    seconds_per_model: float = 0.0,
) -> Choice:
    """The packaged model of a search whose chosen trial is ``best`` (see the module).
    ``time_left()``: seconds left of the budget (``None``: no time budget); each step runs
    only when it leaves time for the package: the ensemble needs :data:`RESERVE_MODELS`
    times ``seconds_per_model`` (a package export's time), the flips one less."""
    return _Chooser(rt, settings, time_left, seconds_per_model).run(
        study, best, folder_of, refit_weights
    )


class _Chooser:
    def __init__(
        self,
        rt: Runtime,
        settings: Settings,
        time_left: Callable[[], float | None],
        per_model: float,
    ) -> None:
        self.rt, self.data, self.settings = rt, rt.data, settings
        self.time_left, self.per_model = time_left, per_model
        self.sel = self.data.val_select
        self.y_sel = self.data.y_val[self.sel]

    def fits(self, n_models: int) -> bool:
        left = self.time_left()
        return left is None or n_models * self.per_model <= left

    def run(
        self,
        study: Any,
        best: Any,
        folder_of: Callable[[int], Path],
        refit_weights: dict[str, Any] | None,
    ) -> Choice:
        cfg = TrialConfig.from_dict(best.user_attrs["config"])
        self.spec = preprocessing_for(cfg)
        self.chosen = chosen = self._load(best, folder_of(best.number))
        members, weights, ens = self.ensemble(study, cfg, folder_of)
        tta = self.flips(members, weights)
        cost: dict[str, Any] = {"ratio": 1.0, "max": self.settings.max_inference_cost}
        if len(members) > 1 or tta["enabled"]:
            members, weights, tta, cost = self.bound_cost(members, weights, tta, ens)
        probs = self.mix(members, weights, tta["enabled"])
        if refit_weights is not None:  # the chosen trial's configuration refit on validation
            chosen.model.load_state_dict(refit_weights)
        if len(members) == 1 and not tta["enabled"]:
            return Choice(chosen.model, probs, ens, tta, None, cost)
        combined = self.combined(members, weights, tta["enabled"])
        arch = architecture(combined, _members(members, weights), len(self.data.labels))
        return Choice(combined, probs, ens, tta, arch, cost)

    # ---- the steps ------------------------------------------------------------------------

    def alone(self, why: str) -> dict[str, Any]:
        return {"kept": False, "why": why, "members": [_member_info(self.chosen, 1.0)]}

    def ensemble(
        self, study: Any, cfg: TrialConfig, folder_of: Callable[[int], Path]
    ) -> tuple[list[_Candidate], list[float], dict[str, Any]]:
        if self.settings.ensemble == "off":
            return [self.chosen], [1.0], self.alone("off (--ensemble off)")
        others = _candidates(study, self.chosen.trial, cfg, folder_of)
        if not others:
            return [self.chosen], [1.0], self.alone("no other trial with the same input")
        if not self.fits(RESERVE_MODELS):
            return [self.chosen], [1.0], self.alone("no time left")
        pool = [self.chosen] + [self._load(t, folder_of(t.number)) for t in others]
        picked = selection.select(self.data.task, self.y_sel, [c.probs[self.sel] for c in pool])
        members, weights = [self.chosen], [1.0]
        if picked.kept:
            members, weights = [pool[i] for i in picked.members], picked.weights
        ens = {
            **picked.to_dict(),
            "candidates": [c.trial.number for c in pool],
            "members": [_member_info(c, w) for c, w in zip(members, weights, strict=True)],
        }
        ens.pop("weights")  # the members carry theirs
        if not picked.kept:
            ens["counts"] = [1]
        return members, weights, ens

    def flips(self, members: list[_Candidate], weights: list[float]) -> dict[str, Any]:
        if self.settings.tta == "off":
            return {"enabled": False, "why": "off (--tta off)"}
        if not self.fits(RESERVE_MODELS - 1):
            return {"enabled": False, "why": "no time left"}
        flipped = None
        for c in members:
            if c.flipped is None:
                if flipped is None:
                    flipped = np.ascontiguousarray(self.px[: len(self.data.val), :, ::-1, :])
                c.flipped = self._probs(c, flipped)
        m0 = self.measure(self.mix(members, weights, False))
        m1 = self.measure(self.mix(members, weights, True))
        helps = selection.beats_by_margin(m1, m0, score_margin=1e-6, loss_margin=TTA_LOSS_MARGIN)
        return {
            "enabled": helps,
            "score": round(m1[0], 6),
            "log_loss": round(m1[1], 6),
            "without_score": round(m0[0], 6),
            "without_log_loss": round(m0[1], 6),
            "why": (
                f"flips {'help' if helps else 'do not help'}: {m1[0]:.4f} (log loss "
                f"{m1[1]:.4f}) against {m0[0]:.4f} ({m0[1]:.4f}) without"
            ),
        }

    def bound_cost(
        self,
        members: list[_Candidate],
        weights: list[float],
        tta: dict[str, Any],
        ens: dict[str, Any],
    ) -> tuple[list[_Candidate], list[float], dict[str, Any], dict[str, Any]]:
        """Drop the lowest-weight members, then the flips, until the combined graph's time
        per image is within ``max_inference_cost`` times the chosen trial's."""
        limit = self.settings.max_inference_cost
        single_graph = self.graph(self.chosen.model)
        dropped: list[Any] = []
        while True:
            graph = self.graph(self.combined(members, weights, tta["enabled"]))
            single, both = inference_times([single_graph, graph], self.spec.input_size)
            ratio = both / single
            if ratio <= limit * (1 + COST_TOLERANCE):
                break
            if len(members) > 1:
                dropped.append({"trial": members[-1].trial.number, "weight": round(weights[-1], 6)})
                members, weights = members[:-1], [w / sum(weights[:-1]) for w in weights[:-1]]
                m = self.measure(self.mix(members, weights, False))
                single_m = (ens["single_score"], ens["single_log_loss"])
                if len(members) == 1 or not selection.beats_by_margin(m, single_m):
                    dropped.extend(
                        {"trial": c.trial.number} for c in members if c is not self.chosen
                    )
                    members, weights = [self.chosen], [1.0]
                    why = "the mix does not fit --max-inference-cost: the chosen trial alone"
                    ens.update({**self.alone(why), "counts": [1]})
                    ens.update(score=ens["single_score"], log_loss=ens["single_log_loss"])
                    tta = self.flips(members, weights)  # decided again for the trial alone
                else:
                    ens.update(score=round(m[0], 6), log_loss=round(m[1], 6))
                    ens["counts"] = ens["counts"][: len(members)]
                    ens["members"] = [
                        _member_info(c, w) for c, w in zip(members, weights, strict=True)
                    ]
            elif tta["enabled"]:
                tta = {**tta, "enabled": False, "why": "flips do not fit --max-inference-cost"}
                dropped.append("tta")
            else:
                ratio = 1.0
                break
        return (
            members,
            weights,
            tta,
            {
                "ratio": round(ratio, 3),
                "max": limit,
                "dropped": dropped,
                "single_ms_per_image": round(single * 1000, 4),
            },
        )

    # ---- helpers --------------------------------------------------------------------------

    @functools.cached_property
    def px(self) -> np.ndarray:
        """The cached pixels (uint8 NHWC, validation rows first), loaded when first needed."""
        return self.rt.pixels(self.spec)

    def measure(self, probs: np.ndarray) -> tuple[float, float]:
        return selection.measure(self.data.task, self.y_sel, probs[self.sel])

    def mix(self, members: list[_Candidate], weights: list[float], tta: bool) -> np.ndarray:
        idx = list(range(len(members)))
        plain = selection.mix([c.probs for c in members], idx, weights)
        if not tta:
            return plain
        flipped = selection.mix([c.flipped for c in members], idx, weights)  # type: ignore[misc]
        return (0.5 * (plain + flipped)).astype(np.float32)

    def combined(self, members: list[_Candidate], weights: list[float], tta: bool) -> Any:
        """The :class:`CombinedModel` of ``members``, on the CPU, of copies of their models
        (theirs stay on the device for predictions)."""
        import copy

        spec = self.spec
        copies = [copy.deepcopy(m) for m in _members(members, weights)]
        for m in copies:
            m.model = m.model.cpu()
        return combine(copies, task=self.data.task, tta=tta, mean=spec.mean, std=spec.std)

    def graph(self, model: Any) -> bytes:
        import copy

        from autovision.models.package import onnx_bytes

        model = copy.deepcopy(model).cpu().eval()
        return onnx_bytes(model, self.data.task, self.spec, {"labels": self.data.labels})

    def _load(self, trial: Any, folder: Path) -> _Candidate:
        from autovision.models.registry import create_model

        cfg = TrialConfig.from_dict(trial.user_attrs["config"])
        weights, probs, idx = load_checkpoint(folder)
        model = create_model(cfg.backbone, num_classes=len(self.data.labels), pretrained=False)
        model.load_state_dict(weights)
        c = _Candidate(trial, cfg, model.to(self.rt.device).eval(), probs)
        if len(idx) < len(self.data.val):  # ranked on part of validation: all of it
            c.probs = self._probs(c, self.px)
        return c

    def _probs(self, c: _Candidate, px: np.ndarray) -> np.ndarray:
        idx = np.arange(len(self.data.val))
        batch = 256 if self.rt.gpu else 128
        return predict(self.rt, c.model, px, idx, preprocessing_for(c.cfg), batch)


def _member_info(c: _Candidate, weight: float) -> dict[str, Any]:
    return {
        "trial": c.trial.number,
        "weight": round(float(weight), 6),
        "backbone": c.cfg.backbone,
        "mode": c.cfg.mode,
        "image_size": c.cfg.image_size,
        "score": c.trial.value,
    }


def _candidates(
    study: Any, best: Any, cfg: TrialConfig, folder_of: Callable[[int], Path]
) -> list[Any]:
    """The best completed trials besides ``best`` whose checkpoints remain and whose images
    are ``best``'s (input size, resize rule)."""
    out = []
    for t in sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
        key=studies.rank_key,
    ):
        if t.number == best.number or not (folder_of(t.number) / "best.safetensors").exists():
            continue
        c = TrialConfig.from_dict(t.user_attrs["config"])
        a, b = preprocessing_for(c), preprocessing_for(cfg)
        if (a.input_size, a.resize, a.interpolation) != (b.input_size, b.resize, b.interpolation):
            continue
        out.append(t)
    return out[: CANDIDATES - 1]


def _members(cands: list[_Candidate], weights: list[float]) -> list[Member]:
    out = []
    for c, w in zip(cands, weights, strict=True):
        s = preprocessing_for(c.cfg)
        out.append(Member(c.model, c.cfg.backbone, w, s.mean, s.std, trial=c.trial.number))
    return out
