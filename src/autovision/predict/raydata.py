"""Batch prediction on a Ray cluster: Ray Data reads and decodes, an actor pool runs ONNX Runtime.

The same steps as :func:`~autovision.predict.pipeline.predict_batch`, spread over a cluster:

1. the driver lists the sources with :func:`~autovision.predict.inputs.expand_inputs` (same
   folders, globs, lists, order and skipped names) and leaves out those already in the output
   or errors file (``resume``);
2. a Ray Data step reads, decodes, resizes and normalizes each batch with
   :func:`~autovision.predict.loading.load_into`, the local pipeline's own function, so a
   bad image gets the same reason and the pixels are the same numbers (Ray fuses this step
   into the actors of step 3, so the pixels never cross the object store);
3. an actor pool (``map_batches`` with a callable class) loads the model once per actor and
   turns each batch into output and error lines with the functions of
   :mod:`~autovision.predict.results`;
4. the driver appends the lines to the output and errors files and flushes them per block, so
   a killed job loses at most the blocks in flight and ``resume`` finishes it.

Ray's ``read_binary_files`` is not used for reading: it fails the whole job on one missing
file and names sources its own way; here every source keeps the name the local pipeline
writes, and a missing or unreadable file is an errors-file row like any other.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from autovision.cluster import cluster_cpus, ray_session
from autovision.data.decode import DEFAULT_MAX_PIXELS
from autovision.data.problems import Problem
from autovision.errors import ClusterError
from autovision.models.package import ModelPackage
from autovision.models.preprocess import Preprocessing
from autovision.predict.inputs import expand_inputs
from autovision.predict.loading import load_into
from autovision.predict.pipeline import BatchResult, ProgressFn, open_run
from autovision.predict.results import (
    ResultWriter,
    error_line,
    format_prediction,
    label_thresholds,
    prediction_line,
)

PACKAGE_FILES = ("model.json", "model.onnx")
"""What an actor needs of a package; shipped through the object store as stored (encrypted
when the package is), so no node needs the package folder."""
MAX_BLOCKS = 10_000


def _decode(
    batch: dict[str, np.ndarray], *, spec: dict[str, Any], max_pixels: int
) -> dict[str, np.ndarray]:
    """A Ray Data task: sources -> float32 [N, 3, S, S] and, per source, whether it loaded."""
    preprocessing = Preprocessing.from_dict(spec)
    size = preprocessing.input_size
    sources = [str(s) for s in batch["source"]]
    pixels = np.zeros((len(sources), 3, size, size), dtype=np.float32)
    loaded = [
        load_into(s, preprocessing, slot, max_pixels=max_pixels)
        for s, slot in zip(sources, pixels, strict=True)
    ]
    return {
        "source": np.asarray(sources, dtype=object),
        "pixels": pixels,
        "ok": np.asarray([x.ok for x in loaded], dtype=bool),
        "reason": np.asarray([x.reason or "" for x in loaded], dtype=object),
        "message": np.asarray([x.message or "" for x in loaded], dtype=object),
    }


class _Predictor:
    """An actor of the pool: the model's ONNX Runtime session, created once per actor."""

    def __init__(
        self,
        files: Any,
        *,
        threads: int,
        confidence_threshold: float | None,
        max_predictions: int | None,
    ) -> None:
        import ray

        contents: dict[str, bytes] = ray.get(files[0])
        tmp = tempfile.mkdtemp(prefix="autovision-package-")
        try:
            for name, data in contents.items():
                Path(tmp, name).write_bytes(data)
            self.package = ModelPackage.load(tmp, threads=threads, spinning=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the session holds the model now
        self.thresholds = label_thresholds(
            self.package.task,
            len(self.package.labels),
            model_thresholds=self.package.thresholds,
            confidence_threshold=confidence_threshold,
        )
        self.max_predictions = max_predictions

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], dtype=bool)
        sources = [str(s) for s in batch["source"]]
        lines = [""] * len(sources)
        if ok.any():
            pixels = np.asarray(batch["pixels"])
            probs = self.package.predict_array(pixels if ok.all() else pixels[ok])
            labels = self.package.labels
            for i, row in zip(np.flatnonzero(ok), probs, strict=True):
                pred = format_prediction(row, labels, self.thresholds, self.max_predictions)
                lines[i] = prediction_line(sources[i], pred)
        for i in np.flatnonzero(~ok):
            lines[i] = error_line(sources[i], str(batch["reason"][i]), str(batch["message"][i]))
        return {
            "source": np.asarray(sources, dtype=object),
            "line": np.asarray(lines, dtype=object),
            "ok": ok,
            "reason": np.asarray(batch["reason"], dtype=object),
        }


@contextlib.contextmanager
def _quiet_ray_data():
    """Our progress callback reports; Ray Data's own progress and info lines stay out."""
    import ray.data  # noqa: F401 - configures its logger, which is then turned down

    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _package_files(package: ModelPackage) -> dict[str, bytes]:
    return {name: (package.path / name).read_bytes() for name in PACKAGE_FILES}


def _pool(ray: Any, actors: int | None, cpus_per_actor: float) -> Any:
    """The actor pool: ``actors`` actors, or from one up to as many as the cluster's CPUs hold.

    Ray Data fuses the decode step into the pool's actors (the pixels never cross the object
    store), so an actor decodes its batch and then runs it: every CPU can be an actor.
    """
    if actors is None:
        cpus = cluster_cpus(ray)
        most = max(1, int(cpus // max(cpus_per_actor, 1e-9)))
        return ray.data.ActorPoolStrategy(min_size=1, max_size=most)
    return ray.data.ActorPoolStrategy(size=actors)


def predict_batch_ray(
    model: Any,
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    address: str,
    errors: str | os.PathLike[str] | None = None,
    resume: bool = False,
    batch_size: int = 64,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    progress: ProgressFn | None = None,
    workspace: Any = None,
    confidence_threshold: float | None = None,
    max_predictions: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BatchResult:
    """:func:`~autovision.predict.pipeline.predict_batch` on the Ray cluster at ``address``.

    Same arguments, files and result; the lines of the output can come in another order.
    ``actors``: size of the ONNX Runtime actor pool (default: from one up to as many as the
    cluster's CPUs hold), each with ``cpus_per_actor`` CPUs (its intra-op threads) and
    ``gpus_per_actor`` GPUs. Every node needs autovision installed and the sources readable
    (shared storage or object storage URLs).
    """
    start = time.perf_counter()
    package, output, errors_path, done = open_run(
        model, workspace, output, errors, batch_size, resume
    )
    sources: list[str] = []
    problems: list[Problem] = []
    skipped = 0
    for entry in expand_inputs(inputs):
        if (entry.source if isinstance(entry, Problem) else entry) in done:
            skipped += 1
        elif isinstance(entry, Problem):
            problems.append(entry)
        else:
            sources.append(entry)
    total = len(sources) + len(problems) + skipped
    failures: Counter[str] = Counter(p.reason for p in problems)
    counts = {"predicted": 0, "failed": len(problems)}

    def report() -> None:
        if progress is not None:
            progress(skipped + counts["predicted"] + counts["failed"], total)

    report()
    with ResultWriter(output, errors_path, append=resume) as writer:
        writer.write([], [error_line(p.source, p.reason, p.message) for p in problems])
        writer.flush()
        if sources:
            for block in _run(
                package,
                sources,
                address,
                batch_size,
                actors,
                cpus_per_actor,
                gpus_per_actor,
                confidence_threshold,
                max_predictions,
                max_pixels,
            ):
                ok = np.asarray(block["ok"], dtype=bool)
                lines = [str(x) for x in block["line"]]
                writer.write(
                    [x for x, good in zip(lines, ok, strict=True) if good],
                    [x for x, good in zip(lines, ok, strict=True) if not good],
                )
                writer.flush()
                failures.update(
                    str(r) for r, good in zip(block["reason"], ok, strict=True) if not good
                )
                counts["predicted"] += int(ok.sum())
                counts["failed"] += int((~ok).sum())
                report()
    return BatchResult(
        output=output,
        errors=errors_path,
        total=total,
        predicted=counts["predicted"],
        failed=counts["failed"],
        skipped=skipped,
        seconds=time.perf_counter() - start,
        failures=dict(failures),
    )


def _run(
    package: ModelPackage,
    sources: list[str],
    address: str,
    batch_size: int,
    actors: int | None,
    cpus_per_actor: float,
    gpus_per_actor: float,
    confidence_threshold: float | None,
    max_predictions: int | None,
    max_pixels: int,
):
    """Yield the pool's output blocks (``source``, ``line``, ``ok``, ``reason``) as they come."""
    with ray_session(address) as ray, _quiet_ray_data():
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        files = ray.put(_package_files(package))
        blocks = min(MAX_BLOCKS, max(1, math.ceil(len(sources) / batch_size)))
        ds = ray.data.from_items([{"source": s} for s in sources], override_num_blocks=blocks)
        ds = ds.map_batches(
            _decode,
            fn_kwargs={"spec": package.preprocessing.to_dict(), "max_pixels": max_pixels},
            batch_size=batch_size,
            batch_format="numpy",
        )
        ds = ds.map_batches(
            _Predictor,
            fn_constructor_kwargs={
                "files": [files],  # a nested reference: the actor fetches it, once
                "threads": max(1, int(cpus_per_actor)),
                "confidence_threshold": confidence_threshold,
                "max_predictions": max_predictions,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=_pool(ray, actors, cpus_per_actor),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor or None,
        )
        try:
            yield from ds.iter_batches(batch_size=None, batch_format="numpy")
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"{address}: the Ray Data job failed: {exc}") from None
