"""Batch prediction: stream sources through decode (thread pool) and ONNX Runtime (batches).

Memory stays bounded: sources are taken a batch at a time, worker threads decode, resize and
normalize each image straight into its slot of the batch array, at most ``prefetch + 1``
batches are in flight, and results are written and flushed per batch (so an interruption
loses at most the batches in flight, and ``resume`` picks up from there).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autovision.data.decode import DEFAULT_MAX_PIXELS
from autovision.data.problems import Problem
from autovision.errors import ModelError
from autovision.models.package import ModelPackage
from autovision.predict.inputs import count_sources, expand_inputs
from autovision.predict.loading import Loaded, load_into
from autovision.predict.results import (
    REMOTE_OUTPUT_NAME,
    ResultWriter,
    completed_sources,
    error_line,
    format_prediction,
    label_thresholds,
    output_target,
    prediction_line,
)

ProgressFn = Callable[[int, int | None], None]
"""``progress(done, total)``: sources handled so far (skipped ones included) and the total
(``None`` when not counted)."""


@dataclass(frozen=True)
class BatchResult:
    """What a batch prediction run did."""

    output: Path | str  # a str for a remote target
    errors: Path | str
    total: int
    predicted: int
    failed: int
    skipped: int
    seconds: float
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        done = self.predicted + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "errors": str(self.errors),
            "total": self.total,
            "predicted": self.predicted,
            "failed": self.failed,
            "skipped": self.skipped,
            "failures": dict(self.failures),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
        }


def default_errors_path(output: str | os.PathLike[str]) -> Path | str:
    """``preds.jsonl`` -> ``preds.errors.jsonl`` (beside the output); a remote folder
    ``s3://b/out/`` -> ``s3://b/out/errors.jsonl``."""
    target = output_target(output)
    if isinstance(target, str):
        folder, _, name = target.rpartition("/")
        if name == REMOTE_OUTPUT_NAME:
            return f"{folder}/errors.jsonl"
        return f"{folder}/{name.rsplit('.', 1)[0]}.errors.jsonl"
    out = target
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.errors.jsonl")


def _same(a: Path | str, b: Path | str) -> bool:
    if isinstance(a, Path) and isinstance(b, Path):
        return a.resolve() == b.resolve()
    return str(a) == str(b)


def result_paths(
    output: str | os.PathLike[str], errors: str | os.PathLike[str] | None
) -> tuple[Path | str, Path | str]:
    """The output and errors targets (a local path, or an object-store URL whose results go
    in part objects; errors default to ``OUTPUT.errors.jsonl``); they must differ."""
    output = output_target(output)
    errors_path = output_target(errors) if errors is not None else default_errors_path(output)
    if _same(output, errors_path):
        raise ModelError(f"{output}: the output and errors files must differ")
    return output, errors_path


def resolve_package(model: Any, workspace: Any = None) -> ModelPackage:
    """A :class:`ModelPackage`, a package folder, or a model id of ``workspace``."""
    if isinstance(model, ModelPackage):
        return model
    path = Path(os.fspath(model))
    if workspace is not None and not (path / "model.json").is_file():
        path = workspace.model_path(str(model))
    if not (path / "model.json").is_file():
        raise ModelError(f"{model}: not a model package (no model.json)")
    return ModelPackage.load(path)


def open_run(
    model: Any, workspace: Any, output: Any, errors: Any, batch_size: int, resume: bool
) -> tuple[ModelPackage, Any, Any, set[str]]:
    """What a batch prediction (local or on Ray) starts from: the package, the output and
    errors targets, and (``resume``) the sources they already hold."""
    package = resolve_package(model, workspace)
    output, errors_path = result_paths(output, errors)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    done: set[str] = set()
    if resume:
        done = completed_sources(output) | completed_sources(errors_path)
    return package, output, errors_path, done


def _batches(entries: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(entries)
    while batch := list(itertools.islice(it, size)):
        yield batch


@dataclass
class _InFlight:
    """One batch being decoded: its array (a slot per source) and a result per entry."""

    pixels: np.ndarray
    results: list[Future | Problem]


def predict_batch(
    model: Any,
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    errors: str | os.PathLike[str] | None = None,
    resume: bool = False,
    batch_size: int = 32,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    workspace: Any = None,
    confidence_threshold: float | None = None,
    max_predictions: int | None = None,
    prefetch: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BatchResult:
    """Predict every image named by ``inputs``; one JSON line per image in ``output``.

    ``model`` is a :class:`ModelPackage`, a package folder, or a model id of ``workspace``.
    Images that cannot be read go to ``errors`` (default ``OUTPUT.errors.jsonl``) with a
    reason from :mod:`autovision.data.problems`; the run goes on. Both files are flushed
    after every batch. With ``resume`` the sources already in ``output`` or ``errors`` are
    skipped and new lines are appended; without it both files are rewritten. ``workers``
    threads decode (default: CPU count) while ONNX Runtime runs; ``prefetch`` batches are
    decoded ahead. Which labels a prediction lists: see
    :func:`~autovision.predict.results.label_thresholds`.
    """
    start = time.perf_counter()
    package, output, errors_path, done = open_run(
        model, workspace, output, errors, batch_size, resume
    )
    total = None
    if progress is not None and not isinstance(inputs, Iterator):
        total = count_sources(inputs)
    thresholds = label_thresholds(
        package.task,
        len(package.labels),
        model_thresholds=package.thresholds,
        confidence_threshold=confidence_threshold,
    )
    spec = package.preprocessing
    size = spec.input_size
    counts = {"predicted": 0, "failed": 0, "skipped": 0, "seen": 0}
    failures: Counter[str] = Counter()

    def fresh(entries: Iterable[str | Problem]) -> Iterator[str | Problem]:
        for entry in entries:
            source = entry.source if isinstance(entry, Problem) else entry
            if source in done:
                counts["skipped"] += 1
                continue
            yield entry

    def submit(pool: ThreadPoolExecutor, batch: list[str | Problem]) -> _InFlight:
        n = sum(1 for e in batch if not isinstance(e, Problem))
        pixels = np.empty((n, 3, size, size), dtype=np.float32)
        results: list[Future | Problem] = []
        slots = iter(pixels)
        for entry in batch:
            if isinstance(entry, Problem):
                results.append(entry)
            else:
                slot = next(slots)
                results.append(pool.submit(load_into, entry, spec, slot, max_pixels=max_pixels))
        return _InFlight(pixels, results)

    def finish(batch: _InFlight, writer: ResultWriter) -> None:
        loaded = [r.result() if isinstance(r, Future) else r for r in batch.results]
        decoded = [x for x in loaded if isinstance(x, Loaded)]
        good = [i for i, x in enumerate(decoded) if x.ok]
        lines: list[str] = []
        if good:
            x = batch.pixels if len(good) == len(decoded) else batch.pixels[good]
            probs = package.predict_array(x)
            for i, row in zip(good, probs, strict=True):
                pred = format_prediction(row, package.labels, thresholds, max_predictions)
                lines.append(prediction_line(decoded[i].source, pred))
        error_lines = []
        for item in loaded:
            if isinstance(item, Problem) or not item.ok:
                reason, message = item.reason or "", item.message or ""
                error_lines.append(error_line(item.source, reason, message))
                failures[reason] += 1
        writer.write(lines, error_lines)
        writer.flush()
        counts["predicted"] += len(lines)
        counts["failed"] += len(error_lines)
        counts["seen"] += len(loaded)
        if progress is not None:
            progress(counts["seen"] + counts["skipped"], total)

    if progress is not None:
        progress(0, total)
    workers = workers or os.cpu_count() or 1
    with (
        ResultWriter(output, errors_path, append=resume) as writer,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autovision-decode") as pool,
    ):
        pending: deque[_InFlight] = deque()
        try:
            for batch in _batches(fresh(expand_inputs(inputs)), batch_size):
                pending.append(submit(pool, batch))
                if len(pending) > max(1, prefetch):
                    finish(pending.popleft(), writer)
            while pending:
                finish(pending.popleft(), writer)
            if progress is not None:
                progress(counts["seen"] + counts["skipped"], total)
        finally:
            for batch in pending:
                for f in batch.results:
                    if isinstance(f, Future):
                        f.cancel()
    return BatchResult(
        output=output,
        errors=errors_path,
        total=counts["seen"] + counts["skipped"],
        predicted=counts["predicted"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        seconds=time.perf_counter() - start,
        failures=dict(failures),
    )
