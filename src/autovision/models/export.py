"""Export a model package for use outside autovision: ONNX fp32, ONNX int8, TorchScript.

Every export writes the model file(s), ``labels.txt`` (one label per line, in output order)
and ``preprocessing.json`` (what to do to an RGB image before the model sees it). int8 is made
with ONNX Runtime's static QDQ quantization (per-channel int8 weights, uint8 activations,
MinMax calibration on training images of the model's dataset); its accuracy on the test split
is measured next to the fp32 model's. Dynamic quantization is offered too, but ONNX Runtime
runs dynamically quantized convolutions (ConvInteger) about 10x slower than fp32.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autovision.errors import ModelError
from autovision.models.package import ONNX_INPUT, ONNX_OUTPUT, ModelPackage
from autovision.models.preprocess import Preprocessing, preprocess

FORMATS = ("onnx", "onnx-int8", "torchscript")
QUANTIZATIONS = ("static", "dynamic")
MODEL_FILES = {
    "onnx": "model.onnx",
    "onnx-int8": "model.int8.onnx",
    "torchscript": "model.torchscript.pt",
}
LABELS_FILE = "labels.txt"
PREPROCESSING_FILE = "preprocessing.json"

Progress = Callable[[str], None]
Sample = tuple[Any, Sequence[str]]  # (RGB PIL image, its labels)


@dataclass
class ExportResult:
    """What an export wrote and, when measured, the accuracy of fp32 and int8 on test images."""

    format: str
    output: Path
    files: list[str]
    accuracy: dict[str, float] | None = None
    evaluated_images: int = 0
    quantization: str | None = None
    calibration_images: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "output": str(self.output),
            "files": self.files,
            "accuracy": self.accuracy,
            "evaluated_images": self.evaluated_images,
            "seconds": round(self.seconds, 2),
        }
        if self.quantization:
            out["quantization"] = self.quantization
            out["calibration_images"] = self.calibration_images
        if self.notes:
            out["notes"] = self.notes
        return out


# ---- library entry points ------------------------------------------------------------------


def export_package(
    package: str | os.PathLike[str] | ModelPackage,
    output: str | os.PathLike[str],
    *,
    format: str,
    calibration: Iterable[Any] | None = None,
    evaluation: Iterable[Sample] | None = None,
    quantization: str = "static",
    calibration_size: int = 128,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``format`` of a model package into ``output`` (created; our files replaced).

    ``calibration``: RGB PIL images (training images) for static int8 quantization; the first
    ``calibration_size`` are used. ``evaluation``: ``(image, labels)`` pairs (the test split);
    when given, the accuracy of the fp32 ONNX model (and of the int8 one) is measured on them.
    """
    if format not in FORMATS:
        raise ModelError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization {quantization!r}; expected static or dynamic")
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    pkg = package if isinstance(package, ModelPackage) else ModelPackage(package)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(format=format, output=out, files=[])
    model_file = out / MODEL_FILES[format]

    if format == "onnx":
        say(f"copying {pkg.onnx_path.name}")
        _atomic_copy(pkg.onnx_path, model_file)
    elif format == "torchscript":
        say("tracing the PyTorch model to TorchScript")
        export_torchscript(pkg, model_file)
    else:
        if quantization == "static":
            spec = pkg.preprocessing
            say(f"reading up to {calibration_size} calibration images")
            images = [
                preprocess([im], spec)
                for im in itertools.islice(calibration or (), calibration_size)
            ]
            if not images:
                raise ModelError(
                    "static int8 quantization needs calibration images (the model's training "
                    "images); none available: give some, or use dynamic quantization"
                )
            say(f"quantizing to int8 (static QDQ, {len(images)} calibration images)")
            result.calibration_images = len(images)
            x = np.concatenate(images)
            quantize_package(pkg, model_file, calibration=x, method="static")
        else:
            say("quantizing to int8 (dynamic)")
            quantize_package(pkg, model_file, method="dynamic")
        result.quantization = quantization

    _write_text(out / LABELS_FILE, "".join(f"{lab}\n" for lab in pkg.labels))
    _write_text(out / PREPROCESSING_FILE, json.dumps(preprocessing_spec(pkg), indent=2) + "\n")
    result.files = [model_file.name, LABELS_FILE, PREPROCESSING_FILE]

    if evaluation is not None:
        models = {"fp32": pkg.onnx_path}
        if format == "onnx-int8":
            models["int8"] = model_file
        say(f"measuring accuracy ({', '.join(models)}) on the test images")
        acc, n = evaluate_onnx(models, evaluation, pkg)
        result.evaluated_images = n
        if n:
            result.accuracy = acc
        else:
            result.notes.append("no labeled test images: accuracy not measured")
    result.seconds = time.perf_counter() - start
    return result


def export_model(
    ws: Any,
    model_id: str,
    output: str | os.PathLike[str],
    *,
    format: str,
    quantization: str = "static",
    calibration_size: int = 128,
    evaluate: bool | None = None,
    eval_limit: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> ExportResult:
    """Export a workspace model (an id, or a package directory), calibrating and evaluating on
    the dataset version it was trained on (``model.json`` ``dataset``, else the registry row).

    ``evaluate`` defaults to on for ``onnx-int8`` only; ``eval_limit`` caps the test images.
    """
    path = Path(model_id)
    if not (path / "model.json").is_file():
        path = ws.model_path(model_id)
    pkg = ModelPackage(path)
    notes: list[str] = []
    dataset = _model_dataset(ws, model_id, pkg, notes)
    if evaluate is None:
        evaluate = format == "onnx-int8"

    calibration = evaluation = None
    if dataset is not None:
        if format == "onnx-int8" and quantization == "static":
            train = list(dataset.split("train"))
            rng = np.random.default_rng(seed)
            picked = [train[i] for i in rng.permutation(len(train))[:calibration_size]]
            calibration = (ws.load_image(it) for it in picked)
        if evaluate:
            test = dataset.split("test")[: eval_limit if eval_limit else None]
            if test:
                evaluation = ((ws.load_image(it), it.labels) for it in test)
            else:
                notes.append(f"{dataset.ref} has no labeled test images: accuracy not measured")
    elif evaluate:
        notes.append("the model's dataset is unknown: accuracy not measured")

    result = export_package(
        pkg,
        output,
        format=format,
        calibration=calibration,
        evaluation=evaluation,
        quantization=quantization,
        calibration_size=calibration_size,
        progress=progress,
    )
    result.notes = notes + result.notes
    return result


# ---- formats -------------------------------------------------------------------------------


def export_torchscript(pkg: ModelPackage, path: Path) -> None:
    """``torch.jit.trace`` of the logits model + softmax/sigmoid: input float32 [N, 3, S, S]."""
    import torch

    from autovision.models.package import _WithActivation

    wrapped = _WithActivation.build(pkg.torch_model(), pkg.task)
    s = pkg.preprocessing.input_size
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # "jit is deprecated"
            traced = torch.jit.trace(wrapped, torch.zeros(2, 3, s, s))
            torch.jit.save(traced, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def quantize_package(
    pkg: ModelPackage,
    path: Path,
    *,
    calibration: np.ndarray | None = None,
    method: str = "static",
    batch_size: int = 16,
) -> None:
    """Write an int8 ONNX model of the package: same input, output and metadata.

    ``calibration``: preprocessed float32 [N, 3, S, S] inputs (static quantization only).

    The graph is re-exported with TF "same" padding made static for the package's input size
    (timm's dynamic padding turns into shape arithmetic that blocks quantization), then
    pre-processed and quantized by ONNX Runtime.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    from autovision.models.package import export_onnx

    spec = pkg.preprocessing

    if method == "static" and (calibration is None or not len(calibration)):
        raise ModelError("static int8 quantization needs calibration inputs")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            x = calibration if calibration is not None else np.zeros((0,), dtype=np.float32)
            self._batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._batches, None)
            return None if x is None else {ONNX_INPUT: x}

    with tempfile.TemporaryDirectory(prefix="autovision-int8-") as tmp_dir:
        tmp = Path(tmp_dir)
        model = static_same_padding(pkg.torch_model(), spec.input_size)
        export_onnx(model, pkg.task, spec, tmp / "fp32.onnx", {"labels": pkg.labels, "id": pkg.id})
        quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "pre.onnx"))
        if method == "static":
            quantize_static(
                str(tmp / "pre.onnx"),
                str(tmp / "int8.onnx"),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            quantize_dynamic(
                str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), weight_type=QuantType.QInt8
            )
        proto = onnx.load(str(tmp / "int8.onnx"))
        src_meta = {p.key: p.value for p in onnx.load(str(pkg.onnx_path)).metadata_props}
        have = {p.key for p in proto.metadata_props}
        for key, value in {**src_meta, "autovision.quantization": f"int8-{method}"}.items():
            if key not in have:
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
        onnx.save(proto, str(tmp / "final.onnx"))
        _atomic_copy(tmp / "final.onnx", path)


def static_same_padding(model: Any, input_size: int) -> Any:
    """A copy of ``model`` whose TF-"same" convolutions (timm ``Conv2dSame``) use the fixed
    padding of an ``input_size`` input, so the exported graph has constant pads. Same outputs."""
    import torch
    import torch.nn.functional as F
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import pad_same_arg
    from torch import nn

    class FixedPadConv(nn.Module):
        def __init__(self, conv: nn.Conv2d, pad: Sequence[int]) -> None:
            super().__init__()
            self.weight, self.bias = conv.weight, conv.bias
            self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
            self.pad = tuple(int(p) for p in pad)  # left, right, top, bottom

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            left, right, top, bottom = self.pad
            args = (self.stride, (top, left), self.dilation, self.groups)
            if left != right or top != bottom:
                x, args = F.pad(x, self.pad), (self.stride, 0, self.dilation, self.groups)
            return F.conv2d(x, self.weight, self.bias, *args)

    model = copy.deepcopy(model).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(
            lambda _m, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:]))
        )
        for name, m in model.named_modules()
        if isinstance(m, Conv2dSame)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    for name, size in sizes.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        conv = getattr(parent, attr)
        pad = pad_same_arg(list(size), list(conv.weight.shape[-2:]), conv.stride, conv.dilation)
        setattr(parent, attr, FixedPadConv(conv, pad))
    return model


def preprocessing_spec(pkg: ModelPackage) -> dict[str, Any]:
    """``preprocessing.json``: the package's :class:`Preprocessing` plus how to call the model."""
    spec: Preprocessing = pkg.preprocessing
    return {
        **spec.to_dict(),
        "color": "RGB",
        "pixel_range": [0, 255],
        "formula": "(pixel - mean) / std per channel, after resizing",
        "layout": "NCHW",
        "dtype": "float32",
        "input": ONNX_INPUT,
        "output": ONNX_OUTPUT,
        "task": pkg.task,
        "activation": "softmax" if pkg.task == "single-label" else "sigmoid",
        "thresholds": pkg.thresholds,
        "labels_file": LABELS_FILE,
        "model_id": pkg.id,
    }


# ---- accuracy ------------------------------------------------------------------------------


def evaluate_onnx(
    models: dict[str, Path],
    samples: Iterable[Sample],
    pkg: ModelPackage,
    *,
    batch_size: int = 32,
) -> tuple[dict[str, float], int]:
    """Accuracy of each ONNX model on ``(image, labels)`` samples, decoding every image once.

    Single-label: top-1 accuracy. Multi-label: exact-match (subset) accuracy at the package's
    thresholds (0.5 when none).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = {
        k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for k, p in models.items()
    }
    index = {lab: i for i, lab in enumerate(pkg.labels)}
    th = np.asarray(pkg.thresholds or [0.5] * len(pkg.labels), dtype=np.float32)
    correct = dict.fromkeys(models, 0)
    n = 0
    for batch in _batches(samples, batch_size):
        images = [img for img, _ in batch]
        target = np.zeros((len(batch), len(pkg.labels)), dtype=bool)
        unknown = np.zeros(len(batch), dtype=bool)
        for row, (_, labels) in enumerate(batch):
            for lab in labels:
                if lab in index:
                    target[row, index[lab]] = True
                else:
                    unknown[row] = True  # a label the model cannot predict: counted wrong
        x = preprocess(images, pkg.preprocessing)
        for key, sess in sessions.items():
            probs = sess.run([ONNX_OUTPUT], {ONNX_INPUT: x})[0]
            if pkg.task == "single-label":
                hit = target[np.arange(len(batch)), probs.argmax(axis=1)]
                hit &= target.sum(axis=1) == 1
            else:
                hit = ((probs >= th) == target).all(axis=1)
            correct[key] += int((hit & ~unknown).sum())
        n += len(batch)
    return ({k: c / n for k, c in correct.items()} if n else {}), n


def _batches(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    it = iter(samples)
    while batch := list(itertools.islice(it, size)):
        yield batch


# ---- helpers -------------------------------------------------------------------------------


def _model_dataset(ws: Any, model_id: str, pkg: ModelPackage, notes: list[str]) -> Any:
    """The dataset version a model was trained on, or ``None`` (with a note) when unknown."""
    from autovision.errors import AutovisionError

    info = pkg.meta.get("dataset")
    ref: str | None = None
    expected_hash: str | None = None
    if isinstance(info, dict) and info.get("name"):
        version = info.get("version")
        ref = f"{info['name']}@{version}" if version else str(info["name"])
        expected_hash = info.get("content_hash")
    elif isinstance(info, str) and info:
        ref = info
    else:
        try:
            row = ws.model(model_id)
        except AutovisionError:
            row = None
        if row and row.get("dataset"):
            version = row.get("dataset_version")
            ref = f"{row['dataset']}@{version}" if version else row["dataset"]
    if ref is None:
        return None
    try:
        dataset = ws.dataset(ref)
    except AutovisionError as exc:
        notes.append(f"the model's dataset {ref} cannot be loaded ({exc})")
        return None
    if expected_hash and dataset.content_hash != expected_hash:
        notes.append(f"{ref} differs from the version the model was trained on (content hash)")
    return dataset


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
