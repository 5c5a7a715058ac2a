"""The output and errors files: Vertex-style JSON lines, flushed per batch, resumable.

Output line: ``{"instance": {"content": SOURCE}, "prediction": {"ids": [...],
"displayNames": [...], "confidences": [...]}}``; errors line: ``{"instance": {"content":
SOURCE}, "error": {"reason": ..., "message": ...}}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np


def label_thresholds(
    task: str,
    n_labels: int,
    *,
    model_thresholds: Sequence[float] | None = None,
    confidence_threshold: float | None = None,
) -> np.ndarray:
    """Per-label minimum confidence for a label to appear in a prediction.

    Single-label: every label appears (sorted by confidence) unless ``confidence_threshold``
    is given. Multi-label: the labels the model decides (its per-label thresholds, 0.5 when
    it has none); an explicit ``confidence_threshold`` replaces them for every label.
    """
    if confidence_threshold is not None:
        return np.full(n_labels, float(confidence_threshold), dtype=np.float32)
    if task == "multi-label":
        th = model_thresholds if model_thresholds is not None else [0.5] * n_labels
        return np.asarray(th, dtype=np.float32)
    return np.zeros(n_labels, dtype=np.float32)


def format_prediction(
    probs: np.ndarray,
    labels: Sequence[str],
    thresholds: np.ndarray,
    max_predictions: int | None = None,
) -> dict[str, list]:
    """One row of probabilities -> ``{"ids", "displayNames", "confidences"}`` sorted by
    confidence (ids are label indices as strings, like Vertex AI)."""
    order = np.argsort(-probs, kind="stable")
    keep = [int(i) for i in order if probs[i] >= thresholds[i]]
    if max_predictions is not None:
        keep = keep[: max(0, max_predictions)]
    return {
        "ids": [str(i) for i in keep],
        "displayNames": [labels[i] for i in keep],
        "confidences": [round(float(probs[i]), 6) for i in keep],
    }


def prediction_line(source: str, prediction: dict) -> str:
    return json.dumps({"instance": {"content": source}, "prediction": prediction}) + "\n"


def error_line(source: str, reason: str, message: str) -> str:
    error = {"reason": reason, "message": message}
    return json.dumps({"instance": {"content": source}, "error": error}) + "\n"


def completed_sources(path: Path) -> set[str]:
    """Sources already written to a results file, after cutting off a truncated last line
    (what an interrupted write leaves) so that appending starts on a fresh line."""
    done: set[str] = set()
    if not path.exists():
        return done
    with open(path, "rb+") as fh:
        data = fh.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            fh.truncate(end)
    for raw in data[:end].splitlines():
        try:
            obj = json.loads(raw)
            source = obj["instance"]["content"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(source, str):
            done.add(source)
    return done


class ResultWriter:
    """Appends lines to the output and errors files; ``flush()`` after each batch."""

    def __init__(self, output: Path, errors: Path, *, append: bool) -> None:
        mode = "a" if append else "w"
        for path in (output, errors):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[str] = open(output, mode, encoding="utf-8")  # noqa: SIM115
        self._err: IO[str] = open(errors, mode, encoding="utf-8")  # noqa: SIM115

    def write(self, lines: list[str], error_lines: list[str]) -> None:
        if lines:
            self._out.write("".join(lines))
        if error_lines:
            self._err.write("".join(error_lines))

    def flush(self) -> None:
        """Hand the lines to the OS: they survive the process being killed."""
        for fh in (self._out, self._err):
            fh.flush()

    def close(self) -> None:
        for fh in (self._out, self._err):
            if not fh.closed:
                fh.flush()
                fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
