"""Retrain and promote: a new version of a named model, judged against the alias's version.

``retrain`` trains the next version of NAME on the newest version of the incumbent's dataset
(or the one given), starting from the version the alias names (``base_model``), evaluates both
on that dataset version's test split, and moves the alias only when the candidate's test
accuracy (macro F1 for multi-label) is at least the incumbent's plus ``min_gain``. Either way
the decision and both figures go into the alias's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovision.data.dataset import DatasetVersion, parse_ref
from autovision.errors import TrainingError
from autovision.security.audit import audited
from autovision.versions import store
from autovision.versions.refs import DEFAULT_ALIAS, check_alias, check_model_name

_TOLERANCE = 1e-9  # 0.9 >= 0.8 + 0.1 must hold despite float rounding


@dataclass
class RetrainResult:
    """Both figures and the decision; :meth:`to_dict` is ``autovision retrain --json``."""

    name: str
    alias: str
    dataset: str
    metric: str
    min_gain: float
    incumbent: dict[str, Any]
    candidate: dict[str, Any]
    promoted: bool
    reason: str
    alias_created: bool = False
    test_images: int = 0
    notes: list[str] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "incumbent": self.incumbent,
            "candidate": self.candidate,
            "metric": self.metric,
            "min_gain": self.min_gain,
            "promoted": self.promoted,
            "reason": self.reason,
            "dataset": self.dataset,
            "test_images": self.test_images,
            "alias_created": self.alias_created,
            "notes": self.notes,
            "train": self.train,
        }


def _incumbent(ws: Any, name: str, alias: str) -> tuple[store.ModelVersion, bool]:
    """The version ``alias`` names, else ``default``'s (the alias is then created on
    promotion: the second value says so)."""
    named = store.aliases(ws, name)  # a clear error when the name does not exist
    if alias in named:
        return store.resolve(ws, f"{name}@{named[alias]}"), False
    return store.resolve(ws, f"{name}@{named[DEFAULT_ALIAS]}"), True


def _dataset(ws: Any, incumbent: store.ModelVersion, dataset: str | None) -> DatasetVersion:
    if dataset is None:
        return ws.dataset(incumbent.dataset)  # its newest version
    parse_ref(dataset)
    return ws.dataset(dataset)


def incumbent_issues(incumbent: store.ModelVersion) -> list[str]:
    """The issues whose images the incumbent's training left out (``train --exclude-issues``;
    ``[]`` when none)."""
    excluded = (incumbent.info or {}).get("excluded") or {}
    return list(excluded.get("issues") or [])


def metric_name(task: str) -> str:
    """The figure the gate compares: accuracy, or macro F1 for multi-label models."""
    return "macro_f1" if task == "multi-label" else "accuracy"


def _figure(result: dict[str, Any], metric: str) -> float:
    value = result["macro"]["f1"] if metric == "macro_f1" else result["accuracy"]
    return float(value)


def predictions_on_test(ws: Any, model_id: str, dv: DatasetVersion) -> Any:
    """A model's predictions on ``dv``'s test split, also when ``dv`` has labels the model
    does not know (a dataset that grew a label): those images then count as wrong."""
    from autovision.evaluation.predictions import (
        SplitPredictions,
        load_package,
        predict_items,
        predict_split,
    )

    info = ws.model(model_id)
    package = load_package(info["path"])
    extra = [lab for lab in dv.labels if lab not in set(package.labels)]
    if not extra:
        return predict_split(ws, info["model"], split="test", dataset=dv.ref)
    items = dv.split("test")
    if not items:
        return predict_split(ws, info["model"], split="test", dataset=dv.ref)  # its error
    probs = predict_items(ws, package, items)
    padded = np.hstack([probs, np.zeros((len(items), len(extra)), dtype=probs.dtype)])
    thresholds = None
    if package.thresholds is not None:
        thresholds = [*map(float, package.thresholds), *([1.0] * len(extra))]
    return SplitPredictions(
        model_id=info["model"],
        dataset=dv,
        split="test",
        labels=[*package.labels, *extra],
        task=package.task,
        thresholds=thresholds,
        items=list(items),
        probs=padded,
        predicted=[[int(j) for j in row] for row in package.decide(probs)],
        notes=[f"labels the model does not know count as wrong: {', '.join(extra)}"],
    )


def _leak_note(ws: Any, incumbent: store.ModelVersion, dv: DatasetVersion) -> list[str]:
    """A note when images the incumbent trained on are in ``dv``'s test split (its figure is
    then flattered: e.g. a dataset version imported with fresh splits)."""
    if incumbent.dataset != dv.name or incumbent.dataset_version == dv.version:
        return []
    try:
        own = ws.dataset(f"{incumbent.dataset}@{incumbent.dataset_version}")
    except Exception:  # noqa: BLE001 - a missing old version only loses the note
        return []
    seen = {it.sha256 for it in own.items if it.split in ("train", "validation")}
    leaked = sum(1 for it in dv.split("test") if it.sha256 in seen)
    if not leaked:
        return []
    return [
        f"{leaked} test images of {dv.ref} were training or validation images of the "
        f"incumbent ({own.ref}): its test figure is optimistic"
    ]


def _side(mv: store.ModelVersion, value: float, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": mv.id,
        "version": mv.version,
        "ref": mv.ref,
        "metric": value,
        "test_metrics": _summary(result),
    }


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    from autovision.evaluation.api import summary

    return {k: v for k, v in summary(result).items() if k != "metrics_path"}


@audited(
    "model.retrain",
    args=("name", "dataset", "budget", "trials", "alias", "min_gain", "exclude_issues"),
    result=lambda r: {
        "incumbent": f"{r.name}@{r.incumbent['version']}",
        "candidate": f"{r.name}@{r.candidate['version']}",
        "metric": r.metric,
        "incumbent_metric": r.incumbent["metric"],
        "candidate_metric": r.candidate["metric"],
        "promoted": r.promoted,
    },
)
def retrain(
    ws: Any,
    name: str,
    *,
    dataset: str | None = None,
    budget: str | float | None = "10m",
    alias: str = "production",
    min_gain: float = 0.0,
    trials: int | None = None,
    seed: int = 0,
    progress: Any = None,
    exclude_issues: str | Sequence[str] | None = None,
) -> RetrainResult:
    """Train the next version of ``name`` from ``name@alias`` and promote it past the gate.

    The candidate trains on ``dataset`` (default: the newest version of the incumbent's
    dataset) under ``budget`` / ``trials``; both are evaluated on that version's test split;
    ``alias`` moves (``kind="promote"``) when candidate >= incumbent + ``min_gain``, else the
    decision is recorded (``kind="kept"``). A missing ``alias`` is judged against ``default``
    and created on promotion.

    ``exclude_issues`` leaves the images those issues flag out of the candidate's training
    and validation data (as ``train --exclude-issues``; never out of the test split both are
    judged on). ``None`` (default) keeps what the incumbent's training left out: the issues
    it was trained without, re-read on the new dataset version; ``""`` or ``[]``: none.
    """
    from autovision.evaluation.api import evaluate, evaluate_predictions
    from autovision.search.run import train

    check_model_name(name)
    check_alias(alias)
    if not np.isfinite(min_gain):
        raise TrainingError(f"--min-gain must be a number, got {min_gain}")
    incumbent, created = _incumbent(ws, name, alias)
    dv = _dataset(ws, incumbent, dataset)
    tests = dv.split("test")
    if not tests:
        raise TrainingError(
            f"{dv.ref} has no labelled test images: there is nothing to compare "
            f"{name}@{alias} with a candidate on"
        )
    notes = _leak_note(ws, incumbent, dv)
    if created:
        notes.append(
            f"{name} has no alias {alias!r} yet: the incumbent is {name}@{DEFAULT_ALIAS} "
            f"(version {incumbent.version}); a promotion creates {name}@{alias}"
        )

    issues = incumbent_issues(incumbent) if exclude_issues is None else exclude_issues
    issues = issues if isinstance(issues, str) else list(issues)
    if issues:
        from autovision.data.edit import parse_issues

        parse_issues(issues)  # a typo fails here, before any training
    run = train(
        ws,
        dv.ref,
        budget=budget,
        trials=trials,
        base_model=incumbent.id,
        seed=seed,
        progress=progress,
        name=name,
        exclude_issues=issues or None,
    )
    candidate = store.resolve(ws, run.model)
    metric = metric_name(candidate.task)
    cand_result = evaluate(ws, candidate.id, dataset=dv.ref)  # its own test split: stored
    inc_result = evaluate_predictions(predictions_on_test(ws, incumbent.id, dv))
    notes += [n for n in inc_result.get("notes", []) if "does not know" in n]
    cand_value, inc_value = _figure(cand_result, metric), _figure(inc_result, metric)
    promoted = cand_value + _TOLERANCE >= inc_value + min_gain
    rule = f"candidate {metric} >= incumbent {metric} + {min_gain:g}"
    reason = (
        f"{'promoted' if promoted else 'kept'}: candidate {candidate.ref} {metric} "
        f"{cand_value:.4f} {'>=' if promoted else '<'} incumbent {incumbent.ref} "
        f"{inc_value:.4f} + min gain {min_gain:g} on the test split of {dv.ref} "
        f"({len(tests)} images)"
    )
    cand_side = _side(candidate, cand_value, cand_result)
    inc_side = _side(incumbent, inc_value, inc_result)
    details = {
        "decision": "promote" if promoted else "kept",
        "rule": rule,
        "metric": metric,
        "min_gain": min_gain,
        "dataset": dv.ref,
        "test_images": len(tests),
        "incumbent": {k: inc_side[k] for k in ("id", "version", "metric")},
        "candidate": {k: cand_side[k] for k in ("id", "version", "metric")},
        "from_metrics": inc_side["test_metrics"],
        "to_metrics": cand_side["test_metrics"],
        "alias_created": created and promoted,
        "run_id": run.run_id,
    }
    if promoted:
        try:
            store.set_alias(
                ws,
                name,
                candidate.version,
                alias,
                kind="promote",
                reason=reason,
                details=details,
                expect_version=store.ABSENT if created else incumbent.version,
            )
        except store.AliasMoved as exc:  # judged against a version the alias no longer names
            promoted, created = False, False
            now = "nothing" if exc.actual is None else f"version {exc.actual}"
            moved = (
                f"was created during the retrain (naming {now})"
                if exc.expected is None
                else f"moved during the retrain from version {exc.expected} to {now}"
            )
            reason = (
                f"kept: {name}@{alias} {moved}; {candidate.ref} not promoted "
                f"(it passed the gate against {incumbent.ref})"
            )
            details = {**details, "decision": "kept", "alias_moved_to": exc.actual}
    if not promoted:
        store.record_decision(
            ws,
            name,
            alias,
            kind="kept",
            version=candidate.version,
            reason=reason,
            details=details,
            from_version=incumbent.version,
        )
    return RetrainResult(
        name=name,
        alias=alias,
        dataset=dv.ref,
        metric=metric,
        min_gain=min_gain,
        incumbent=inc_side,
        candidate=cand_side,
        promoted=promoted,
        reason=reason,
        alias_created=created and promoted,
        test_images=len(tests),
        notes=notes,
        train=run.to_dict(),
    )
