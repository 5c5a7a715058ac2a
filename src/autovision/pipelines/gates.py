"""Gates: conditions on a stage's outputs that stop the pipeline when they fail.

A gate is judged on the stage's recorded outputs (also when they are reused from an earlier
run), so changing a threshold never reruns the stage's work. Each condition reports its
figure and limit; a figure that is not there (a check not run, an evaluation without the
slice gaps) skips that condition with a note instead of failing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TOL = 1e-9


@dataclass
class Condition:
    condition: str  # "max_conflicting_labels"
    limit: float
    figure: float | None
    passed: bool | None  # None: skipped (no figure)
    what: str = ""  # what the figure is: "conflicting_labels", "recall of label 'b'"
    note: str = ""

    def text(self) -> str:
        if self.passed is None:
            return f"{self.condition} {self.limit:g}: skipped ({self.note})"
        op = (
            ("<=" if self.condition.startswith("max") else ">=")
            if self.passed
            else (">" if self.condition.startswith("max") else "<")
        )
        figure = f"{self.figure:.4g}" if isinstance(self.figure, float) else str(self.figure)
        text = f"{self.what} {figure} {op} {self.condition} {self.limit:g}"
        return f"{text} ({self.note})" if self.note else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "limit": self.limit,
            "figure": self.figure,
            "what": self.what,
            "passed": self.passed,
            "note": self.note,
            "text": self.text(),
        }


@dataclass
class GateResult:
    conditions: list[Condition] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.conditions)

    @property
    def failed(self) -> list[Condition]:
        return [c for c in self.conditions if c.passed is False]

    def message(self) -> str:
        if not self.conditions:
            return ""
        if all(c.passed is None for c in self.conditions):
            return "gate skipped: " + "; ".join(c.text() for c in self.conditions)
        if self.passed:
            return "gate passed: " + "; ".join(c.text() for c in self.conditions)
        return "gate failed: " + "; ".join(c.text() for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "conditions": [c.to_dict() for c in self.conditions],
            "message": self.message(),
        }


def _upper(name: str, limit: float, figure: float | None, what: str, note: str = "") -> Condition:
    if figure is None:
        return Condition(name, limit, None, None, what, note or f"no {what} figure")
    return Condition(name, limit, figure, figure <= limit + _TOL, what, note)


def _lower(name: str, limit: float, figure: float | None, what: str, note: str = "") -> Condition:
    if figure is None:
        return Condition(name, limit, None, None, what, note or f"no {what} figure")
    return Condition(name, limit, figure, figure + _TOL >= limit, what, note)


CHECK_COUNTS = {
    "max_conflicting_labels": "conflicting_labels",
    "max_split_leakage": "split_leakage",
    "max_exact_duplicates": "exact_duplicates",
    "max_near_duplicates": "near_duplicates",
    "max_label_issues": "label_issues",
    "max_outliers": "outliers",
}


def check_gate(params: dict[str, Any], outputs: dict[str, Any]) -> GateResult:
    """The check stage's gate on its ``counts`` (:func:`autovision.data.report.checks_summary`)
    and ``labels`` (images per label)."""
    gate = params.get("gate") or {}
    counts = outputs.get("counts") or {}
    out = GateResult()
    for name, key in CHECK_COUNTS.items():
        if gate.get(name) is None:
            continue
        figure = counts.get(key)
        note = (
            ""
            if figure is not None
            else f"the {key} check did not run: set `{key}: true` in the check stage"
        )
        out.conditions.append(_upper(name, gate[name], figure, key, note))
    if gate.get("min_images_per_label") is not None:
        labels = outputs.get("labels") or {}
        if labels:
            label, n = min(labels.items(), key=lambda kv: (kv[1], kv[0]))
            out.conditions.append(
                _lower("min_images_per_label", gate["min_images_per_label"], n, f"label {label!r}")
            )
        else:
            out.conditions.append(
                _lower("min_images_per_label", gate["min_images_per_label"], 0, "labelled images")
            )
    return out


def _slice_gaps(outputs: dict[str, Any]) -> dict[str, Any] | None:
    slices = outputs.get("slices")
    if not isinstance(slices, dict):
        return None
    found = {}
    for key, block in slices.items():
        gaps = block.get("gaps") if isinstance(block, dict) else None
        if isinstance(gaps, dict):
            found[key] = gaps
    return found or None


def evaluate_gate(params: dict[str, Any], outputs: dict[str, Any]) -> GateResult:
    """The evaluate stage's gate: overall accuracy, each label's recall, and the largest gap
    between slice values (``slices[KEY]["gaps"][METRIC] = {"gap", "flagged"}``)."""
    gate = params.get("gate") or {}
    out = GateResult()
    if gate.get("min_accuracy") is not None:
        out.conditions.append(
            _lower("min_accuracy", gate["min_accuracy"], outputs.get("accuracy"), "accuracy")
        )
    if gate.get("min_recall_per_label") is not None:
        recalls = {k: v for k, v in (outputs.get("recall") or {}).items() if v is not None}
        if recalls:
            label, worst = min(recalls.items(), key=lambda kv: (kv[1], kv[0]))
            what = f"recall of label {label!r}"
        else:
            worst, what = None, "per-label recall"
        out.conditions.append(
            _lower("min_recall_per_label", gate["min_recall_per_label"], worst, what)
        )
    if gate.get("max_slice_gap") is not None:
        gaps = _slice_gaps(outputs)
        if gaps is None:
            note = (
                "the evaluation has no slice gaps (slices.KEY.gaps): give `slice_by` in the "
                "evaluate stage, with an autovision that computes them"
            )
            out.conditions.append(_upper("max_slice_gap", gate["max_slice_gap"], None, "gap", note))
        else:
            worst: tuple[float, str] | None = None
            thin = 0  # gaps between values with too few images: reported, not gated on
            for key, metrics in gaps.items():
                for metric, g in metrics.items():
                    value = g.get("gap") if isinstance(g, dict) else None
                    if not isinstance(value, int | float):
                        continue
                    if not g.get("enough_support", True):
                        thin += 1
                        continue
                    if worst is None or value > worst[0]:
                        worst = (float(value), f"{metric} gap between values of {key!r}")
            figure, what = worst if worst else (None, "slice gap")
            note = ""
            if thin:
                note = f"{thin} gap(s) between values with too few images not counted"
                if worst is None:
                    note = f"no slice gap has enough images on both sides ({note})"
            out.conditions.append(
                _upper("max_slice_gap", gate["max_slice_gap"], figure, what, note)
            )
    return out


def compare_gate(params: dict[str, Any], outputs: dict[str, Any]) -> GateResult:
    """The compare stage: candidate - incumbent >= ``min_gain`` (no incumbent: passes)."""
    out = GateResult()
    gain = outputs.get("gain")
    if outputs.get("incumbent") is None or gain is None:
        note = outputs.get("note") or "no incumbent to compare with"
        out.conditions.append(Condition("min_gain", params["min_gain"], None, None, "gain", note))
        return out
    metric = outputs.get("metric", "accuracy")
    out.conditions.append(
        _lower("min_gain", params["min_gain"], gain, f"{metric} gain over {outputs['incumbent']}")
    )
    return out
