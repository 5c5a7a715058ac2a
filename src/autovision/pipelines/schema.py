"""The pipeline file: pydantic models of its YAML, loaded with the line of every key.

``load_pipeline(path)`` parses the YAML with PyYAML's composed nodes (which keep line
numbers), validates it against :class:`PipelineSpec`, and turns every problem (unknown key,
wrong type, missing stage) into one :class:`SpecError` listing ``file line N, key: reason``.
``json_schema()`` is what ``autovision pipeline schema`` prints for editors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autovision.errors import PipelineError

STAGE_ORDER = ("import", "check", "train", "evaluate", "compare", "export", "promote")
"""Every stage type, in dependency order (a stage only ever uses the ones before it)."""

NEEDS: dict[str, tuple[str, ...]] = {
    "evaluate": ("train",),
    "compare": ("train",),
    "export": ("train",),
    "promote": ("train",),
}
"""Stages that cannot run without another stage of the same file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    from autovision.search.budget import parse_duration

    try:
        parse_duration(value)
    except Exception as exc:  # noqa: BLE001 - TrainingError: its message is the reason
        raise ValueError(str(exc)) from None
    return str(value)


class ImportStage(_Strict):
    """``autovision dataset import DATASET SOURCE``."""

    source: str = Field(
        description="Folder, CSV or JSONL file (path relative to the YAML file), or an fsspec URL."
    )
    format: Literal["folder", "csv", "jsonl"] | None = None
    multi_label: bool | None = None
    split: str = "80/10/10"
    seed: int = 0
    strict: bool = False
    allow_roots: list[str] = Field(default_factory=list)
    allow_urls: bool = False
    max_file_mb: float = Field(30.0, gt=0)


class CheckGate(_Strict):
    """Upper bounds on what the data checks found (and a lower one on images per label)."""

    max_conflicting_labels: int | None = Field(None, ge=0)
    max_split_leakage: int | None = Field(None, ge=0)
    max_exact_duplicates: int | None = Field(None, ge=0)
    max_near_duplicates: int | None = Field(None, ge=0)
    max_label_issues: int | None = Field(None, ge=0)
    max_outliers: int | None = Field(None, ge=0)
    min_images_per_label: int | None = Field(None, ge=0)


class CheckStage(_Strict):
    """The data report of the version, plus ``autovision dataset check`` for the model-based
    checks asked (none asked: the report's duplicate, conflict and leakage checks only)."""

    label_issues: bool = False
    outliers: bool = False
    near_duplicates: bool = False
    folds: int = Field(5, ge=2)
    budget: str | None = None
    gate: CheckGate | None = None

    _budget = field_validator("budget", mode="before")(_duration)


class TrainStage(_Strict):
    """``autovision train`` (resumed through the search's own resume after a kill)."""

    budget: str | None = None
    trials: int | None = Field(None, ge=1)
    seed: int = 0
    task: Literal["auto", "single-label", "multi-label"] = "auto"
    base_model: str | None = None
    exclude_issues: list[str] | None = None
    name: str | None = Field(None, description="Model name (default: the pipeline's `model`).")

    _budget = field_validator("budget", mode="before")(_duration)


class EvaluateGate(_Strict):
    """Lower bounds on the test metrics; ``max_slice_gap`` reads ``slices.KEY.gaps``."""

    min_accuracy: float | None = Field(None, ge=0, le=1)
    min_recall_per_label: float | None = Field(None, ge=0, le=1)
    max_slice_gap: float | None = Field(None, ge=0, le=1)


class EvaluateStage(_Strict):
    """``autovision evaluate MODEL``."""

    split: str = "test"
    report: bool = False
    slice_by: str | None = Field(
        None, description="Metadata attributes to slice by, comma-separated (skin_tone,camera)."
    )
    min_slice_support: int | None = Field(
        None, ge=1, description="Images a value needs on both sides of a gap for it to count."
    )
    gate: EvaluateGate | None = None


class CompareStage(_Strict):
    """The new version against ``NAME@alias`` on the new version's test split; a gate."""

    alias: str = "production"
    min_gain: float = 0.0
    split: str = "test"


class ExportStage(_Strict):
    """``autovision export MODEL --format F`` for each format."""

    formats: list[Literal["onnx", "onnx-int8", "torchscript"]] = Field(
        default_factory=lambda: ["onnx"], min_length=1
    )
    output: str | None = Field(None, description="Folder (default: WORKSPACE/exports).")
    evaluate: bool | None = None


class PromoteStage(_Strict):
    """``autovision models alias set NAME@VERSION ALIAS`` (a promotion)."""

    alias: str = "production"
    reason: str | None = None


class Stages(_Strict):
    import_: ImportStage | None = Field(None, alias="import")
    check: CheckStage | None = None
    train: TrainStage | None = None
    evaluate: EvaluateStage | None = None
    compare: CompareStage | None = None
    export: ExportStage | None = None
    promote: PromoteStage | None = None

    def present(self) -> list[str]:
        return [s for s in STAGE_ORDER if getattr(self, _attr(s)) is not None]

    def get(self, stage: str) -> Any:
        return getattr(self, _attr(stage))


class Card(_Strict):
    """What a model card cannot take from the records (free text): stored with the model
    the train stage makes (or reuses), shown in its card (``autovision models card``)."""

    intended_use: str | list[str] | None = None
    limitations: str | list[str] | None = None
    ethical_considerations: str | list[str] | None = None


class PipelineSpec(_Strict):
    """One pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    dataset: str = Field(description="Dataset name the import writes (or the stages read).")
    model: str | None = Field(None, description="Model name (default: the dataset's name).")
    card: Card | None = None
    stages: Stages

    @property
    def model_name(self) -> str:
        train = self.stages.train
        return (train.name if train and train.name else None) or self.model or self.dataset


def _attr(stage: str) -> str:
    return "import_" if stage == "import" else stage


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file (by the YAML's key names)."""
    schema = PipelineSpec.model_json_schema(by_alias=True)
    schema["title"] = "autovision pipeline"
    return schema


# ---- loading with line numbers -------------------------------------------------------------


@dataclass
class Problem:
    line: int | None
    key: str
    message: str


class SpecError(PipelineError):
    """An invalid pipeline file; ``problems`` are (line, key, message), one per finding."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        lines = [
            f"{file}" + (f" line {p.line}" if p.line else "") + f", {p.key}: {p.message}"
            for p in self.problems
        ]
        if len(lines) > 1:
            lines.insert(0, f"{file}: invalid pipeline ({len(lines)} problems)")
        super().__init__("\n".join(lines))

    def to_dict(self) -> list[dict[str, Any]]:
        return [{"line": p.line, "key": p.key, "message": p.message} for p in self.problems]


@dataclass
class LoadedPipeline:
    spec: PipelineSpec
    path: Path
    text: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, location: str) -> str:
        """A path of the file relative to its folder (URLs and absolute paths unchanged)."""
        if "://" in location or os.path.isabs(os.path.expanduser(location)):
            return os.path.expanduser(location)
        return str((self.base_dir / location).resolve())


def _lines(node: Any, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """``{path: line}`` (1-based) of every key and sequence entry under ``node``; a mapping's
    own path maps to the line of its first key."""
    import yaml

    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out[sub] = key.start_mark.line + 1
            _lines(value, sub, out)
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _lines(value, (*path, i), out)
    return out


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _problem(err: dict[str, Any], lines: dict[tuple, int]) -> Problem:
    loc = tuple(err["loc"])
    known = loc
    while known and known not in lines:
        known = known[:-1]
    line = lines.get(known)
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "missing"
    else:
        message = err["msg"]
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
    return Problem(line, _dotted(loc), message)


def parse_pipeline(text: str, file: str = "<pipeline>") -> PipelineSpec:
    """Validate pipeline YAML ``text``; :class:`SpecError` names the line and key of each
    problem."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError(file, [Problem(line, "(yaml)", f"not valid YAML: {reason}")]) from None
    if not isinstance(data, dict):
        raise SpecError(file, [Problem(1, "(top level)", "expected a mapping of keys")])
    lines = _lines(node)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(file, [_problem(e, lines) for e in exc.errors()]) from None
    problems = []
    present = spec.stages.present()
    if not present:
        problems.append(Problem(lines.get(("stages",)), "stages", "no stage given"))
    for stage in present:
        for need in NEEDS.get(stage, ()):
            if need not in present:
                problems.append(
                    Problem(
                        lines.get(("stages", stage)),
                        f"stages.{stage}",
                        f"needs a '{need}' stage (missing)",
                    )
                )
    if problems:
        raise SpecError(file, problems)
    return spec


def load_pipeline(path: str | os.PathLike[str]) -> LoadedPipeline:
    """Read and validate the pipeline file at ``path``."""
    p = Path(path).expanduser().resolve()
    try:
        text = p.read_text()
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read the pipeline file ({exc.strerror})") from None
    return LoadedPipeline(parse_pipeline(text, str(path)), p, text)
