"""The output and errors files: Vertex-style JSON lines, flushed per batch, resumable.

Output line: ``{"instance": {"content": SOURCE}, "prediction": {"ids": [...],
"displayNames": [...], "confidences": [...]}}``; errors line: ``{"instance": {"content":
SOURCE}, "error": {"reason": ..., "message": ...}}``.

An object-storage target (``s3://bucket/out/`` or ``s3://bucket/out/preds.jsonl``) cannot be
appended to: its lines go out as numbered part objects (``predictions-00000.jsonl``, or
``preds-00000.jsonl``, and the errors beside them), one every :data:`PART_LINES` lines or
:data:`PART_SECONDS` seconds and at the end; a run killed outright loses at most the lines
since the last part, and ``resume`` reads every part back.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from autovision.workspace import storage

PART_LINES = 10_000
PART_SECONDS = 30.0
ENV_PART_LINES = "AUTOVISION_PREDICT_PART_LINES"  # overrides, read when a run starts
ENV_PART_SECONDS = "AUTOVISION_PREDICT_PART_SECONDS"
REMOTE_OUTPUT_NAME = "predictions.jsonl"  # the output named by a bare remote folder
_LIST_EXTENSIONS = (".jsonl", ".ndjson", ".json")

Target = str | os.PathLike[str]


def is_remote(target: Target) -> bool:
    return storage.is_remote(os.fspath(target))


def output_target(output: Target) -> str | Path:
    """A local output as a ``Path``; a remote one as ``PREFIX/NAME.jsonl`` (a folder URL
    names ``PREFIX/predictions.jsonl``)."""
    text = os.fspath(output)
    if not is_remote(text):
        return Path(text)
    if text.endswith("/") or not text.lower().endswith(_LIST_EXTENSIONS):
        return f"{text.rstrip('/')}/{REMOTE_OUTPUT_NAME}"
    return text


def _parts(target: str) -> tuple[object, str, str]:
    """``(fs, folder path, stem)`` of a remote target ``PREFIX/STEM.jsonl``."""
    folder, _, name = target.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    fs, base = storage.filesystem(folder)
    return fs, base.rstrip("/"), stem


def _part_names(fs, base: str, stem: str) -> list[tuple[int, str]]:
    pattern = re.compile(rf"^{re.escape(stem)}-(\d{{5,}})\.jsonl$")
    try:
        names = fs.ls(base, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    found = []
    for path in names:
        m = pattern.match(path.rsplit("/", 1)[-1])
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


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


def completed_sources(path: Target) -> set[str]:
    """Sources already written to a results file, after cutting off a truncated last line
    (what an interrupted write leaves) so that appending starts on a fresh line. A remote
    target: the sources of all its parts."""
    if is_remote(path):
        target = os.fspath(path)
        fs, base, stem = _parts(target)
        with storage.translate_errors(target):
            data = b"".join(fs.cat_file(p) for _, p in _part_names(fs, base, stem))
        return _sources(data)
    path = Path(path)
    if not path.exists():
        return set()
    with open(path, "rb+") as fh:
        data = fh.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            fh.truncate(end)
    return _sources(data[:end])


def _sources(data: bytes) -> set[str]:
    done: set[str] = set()
    for raw in data.splitlines():
        try:
            obj = json.loads(raw)
            source = obj["instance"]["content"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(source, str):
            done.add(source)
    return done


def _open(target: Target, append: bool) -> IO[str] | _RemoteParts:
    if is_remote(target):
        return _RemoteParts(os.fspath(target), append=append)
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115


class _RemoteParts:
    """A text sink that writes numbered part objects: what ``flush`` sends is a whole
    object (never half a line); parts go out at most every PART_LINES / PART_SECONDS."""

    def __init__(self, target: str, *, append: bool) -> None:
        self.target = target
        self.fs, self.base, self.stem = _parts(target)
        with storage.translate_errors(target):
            existing = _part_names(self.fs, self.base, self.stem)
            if not append:
                for _, path in existing:
                    self.fs.rm_file(path)
                existing = []
        self._next = existing[-1][0] + 1 if existing else 0
        self.part_lines = int(os.environ.get(ENV_PART_LINES) or PART_LINES)
        self.part_seconds = float(os.environ.get(ENV_PART_SECONDS) or PART_SECONDS)
        self._buffer: list[str] = []
        self._lines = 0
        self._since = time.monotonic()
        self.closed = False

    def write(self, text: str) -> None:
        self._buffer.append(text)
        self._lines += text.count("\n")

    def flush(self, *, force: bool = False) -> None:
        if not self._buffer:
            return
        elapsed = time.monotonic() - self._since
        due = self._lines >= self.part_lines or elapsed >= self.part_seconds
        if not (force or due):
            return
        path = f"{self.base}/{self.stem}-{self._next:05d}.jsonl"
        with storage.translate_errors(self.target):
            self.fs.pipe_file(path, "".join(self._buffer).encode("utf-8"))
        self._next += 1
        self._buffer, self._lines, self._since = [], 0, time.monotonic()

    def close(self) -> None:
        self.flush(force=True)
        self.closed = True


class ResultWriter:
    """Appends lines to the output and errors files (local files, or part objects of a
    remote target); ``flush()`` after each batch."""

    def __init__(self, output: Target, errors: Target, *, append: bool) -> None:
        self._out = _open(output, append)
        self._err = _open(errors, append)

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
                if not isinstance(fh, _RemoteParts):
                    fh.flush()
                fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
