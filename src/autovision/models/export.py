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
from autovision.models.preprocess import RESIZE_HOW, Preprocessing, preprocess
from autovision.security.audit import audited

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
class QuantizeReport:
    """What the int8 accuracy guard saw: top-1 agreement with the fp32 model on the check
    images (``None``: not checked) and the nodes left in float to reach it."""

    agreement: float | None = None
    check_images: int = 0
    float_nodes: list[str] = field(default_factory=list)
    rounds: int = 1


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
    guard: QuantizeReport | None = None  # int8 accuracy guard
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
        if self.guard is not None and self.guard.agreement is not None:
            out["int8_agreement"] = round(self.guard.agreement, 4)
            out["agreement_images"] = self.guard.check_images
            out["float_nodes"] = self.guard.float_nodes
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
    check: Iterable[Any] | None = None,
    check_size: int = 256,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``format`` of a model package into ``output`` (created; our files replaced).

    ``calibration``: RGB PIL images (training images) for static int8 quantization; the first
    ``calibration_size`` are used. ``check``: other RGB images (the validation split) for the
    int8 accuracy guard (see :func:`quantize_package`); the first ``check_size`` are used.
    ``evaluation``: ``(image, labels)`` pairs (the test split); when given, the accuracy of the
    fp32 ONNX model (and of the int8 one) is measured on them.
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
        _write_bytes(model_file, pkg.onnx_bytes())  # plaintext: export is for the edge device
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
            held_out = [preprocess([im], spec) for im in itertools.islice(check or (), check_size)]
            result.guard = quantize_package(
                pkg,
                model_file,
                calibration=x,
                method="static",
                check=np.concatenate(held_out) if held_out else None,
                progress=say,
            )
        else:
            say("quantizing to int8 (dynamic)")
            quantize_package(pkg, model_file, method="dynamic")
        result.quantization = quantization

    _write_text(out / LABELS_FILE, "".join(f"{lab}\n" for lab in pkg.labels))
    _write_text(out / PREPROCESSING_FILE, json.dumps(preprocessing_spec(pkg), indent=2) + "\n")
    result.files = [model_file.name, LABELS_FILE, PREPROCESSING_FILE]

    if evaluation is not None:
        models: dict[str, Path | bytes] = {"fp32": pkg.onnx_bytes()}
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


@audited(
    "model.export",
    args=("model_id", "output", "format", "quantization"),
    result=lambda r: {"files": r.files},
)
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
    """Export a workspace model (an id, ``NAME@VERSION``/``NAME@ALIAS``, or a package
    directory), calibrating and evaluating on
    the dataset version it was trained on (``model.json`` ``dataset``, else the registry row).

    ``evaluate`` defaults to on for ``onnx-int8`` only; ``eval_limit`` caps the test images.
    """
    path = Path(model_id)
    if not (path / "model.json").is_file():
        row = ws.model(model_id)  # an id or a version reference (NAME@production)
        model_id, path = row["model"], Path(row["path"])
    pkg = ModelPackage(path)
    notes: list[str] = []
    dataset = _model_dataset(ws, model_id, pkg, notes)
    if evaluate is None:
        evaluate = format == "onnx-int8"

    calibration = evaluation = check = None
    if dataset is not None:
        if format == "onnx-int8" and quantization == "static":
            train = list(dataset.split("train"))
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(train))
            picked = [train[i] for i in order[:calibration_size]]
            calibration = (ws.load_image(it) for it in picked)
            # the guard checks held-out images: validation, else training images not calibrated on
            held = list(dataset.split("validation")) or [train[i] for i in order[calibration_size:]]
            check = (ws.load_image(it) for it in held)
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
        check=check,
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


INT8_MIN_AGREEMENT = 0.99  # top-1 agreement with fp32 on held-out images the guard wants
INT8_FLOAT_STEPS = (4, 8, 16)  # most sensitive convolutions kept in float, tried in turn


def quantize_package(
    pkg: ModelPackage,
    path: Path,
    *,
    calibration: np.ndarray | None = None,
    method: str = "static",
    batch_size: int = 16,
    check: np.ndarray | None = None,
    min_agreement: float = INT8_MIN_AGREEMENT,
    progress: Progress | None = None,
) -> QuantizeReport:
    """Write an int8 ONNX model of the package: same input, output and metadata.

    ``calibration``: preprocessed float32 [N, 3, S, S] inputs (static quantization only).
    ``check``: held-out preprocessed inputs for the accuracy guard (static only): when the
    int8 model's top-1 agreement with fp32 on them is under ``min_agreement``, the nodes whose
    outputs quantization disturbs most (signal-to-quantization-noise ratio, ONNX Runtime's
    ``qdq_loss_debug``) stay in float, 4, then 8, then 16 of them, until it is reached (else the
    best agreement seen is kept). Classifications change only where fp32 and int8 disagree, so
    agreement bounds the accuracy lost.

    The graph is re-exported with TF "same" padding made static for the package's input size
    (timm's dynamic padding turns into shape arithmetic that blocks quantization), then
    pre-processed and quantized by ONNX Runtime.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process, quantize_dynamic

    from autovision.models.package import export_onnx

    spec = pkg.preprocessing
    say = progress or (lambda _msg: None)
    if method == "static" and (calibration is None or not len(calibration)):
        raise ModelError("static int8 quantization needs calibration inputs")

    report = QuantizeReport()
    with tempfile.TemporaryDirectory(prefix="autovision-int8-") as tmp_dir:
        tmp = Path(tmp_dir)
        model = static_same_padding(pkg.torch_model(), spec.input_size)
        # probabilities only: the edge file needs no embedding, and the guard compares top-1
        meta = {"labels": pkg.labels, "id": pkg.id}
        export_onnx(model, pkg.task, spec, tmp / "fp32.onnx", meta, embedding=False)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(tmp / "fp32.onnx"), str(pre))
        best = tmp / "int8.onnx"
        if method == "static":
            assert calibration is not None
            _quantize_static(pre, best, calibration, batch_size, exclude=())
            if check is not None and len(check):
                report = _guard(pre, best, calibration, check, batch_size, min_agreement, say)
        else:
            from onnxruntime.quantization import QuantType

            quantize_dynamic(str(pre), str(best), weight_type=QuantType.QInt8)
        proto = onnx.load(str(best))
        src_meta = {p.key: p.value for p in onnx.load_from_string(pkg.onnx_bytes()).metadata_props}
        have = {p.key for p in proto.metadata_props}
        extra = {"autovision.quantization": f"int8-{method}"}
        if report.float_nodes:
            extra["autovision.float_nodes"] = json.dumps(report.float_nodes)
        for key, value in {**src_meta, **extra}.items():
            if key not in have:
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
        onnx.save(proto, str(tmp / "final.onnx"))
        _atomic_copy(tmp / "final.onnx", path)
    return report


def _reader(x: np.ndarray, batch_size: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._batches, None)
            return None if b is None else {ONNX_INPUT: b}

    return Reader()


def _quantize_static(
    pre: Path, out: Path, calibration: np.ndarray, batch_size: int, exclude: Sequence[str]
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(pre),
        str(out),
        _reader(calibration, batch_size),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
    )


def _cpu_session(path: Path | bytes) -> Any:
    """A quiet ONNX Runtime CPU session of a file or model bytes (exported files are judged on
    the CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _top1(path: Path, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    sess = _cpu_session(path)
    return np.concatenate(
        [
            sess.run([ONNX_OUTPUT], {ONNX_INPUT: x[i : i + batch_size]})[0].argmax(1)
            for i in range(0, len(x), batch_size)
        ]
    )


def sensitive_nodes(pre: Path, int8: Path, x: np.ndarray, tmp: Path) -> list[str]:
    """Nodes of the float graph ``pre`` by how much quantizing their outputs disturbs them in
    ``int8`` (lowest signal-to-quantization-noise ratio first)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    dbg.modify_model_output_intermediate_tensors(str(pre), str(tmp / "fp32_aug.onnx"))
    dbg.modify_model_output_intermediate_tensors(str(int8), str(tmp / "int8_aug.onnx"))
    fp = dbg.collect_activations(str(tmp / "fp32_aug.onnx"), _reader(x, 8))
    q = dbg.collect_activations(str(tmp / "int8_aug.onnx"), _reader(x, 8))
    errors = dbg.compute_activation_error(dbg.create_activation_matching(q, fp))
    producer = {o: n for n in onnx.load(str(pre)).graph.node for o in n.output}
    # qdq_err: the tensor against its own quantized copy, a node's local damage (the error
    # against the float model accumulates along the graph and would rank the head first)
    ranked = sorted(errors.items(), key=lambda kv: kv[1]["qdq_err"])
    out: list[str] = []
    for tensor, _ in ranked:
        node = producer.get(tensor)
        # an activation's damage is its convolution's: activations stay fused with it, and
        # one left in float alone would make the convolution's output range wider
        while node is not None and node.op_type in _ACTIVATIONS and node.input:
            node = producer.get(node.input[0])
        if node is not None and node.op_type in _WEIGHTED and node.name not in out:
            out.append(node.name)
    return out


_ACTIVATIONS = {"Clip", "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Mul"}
_WEIGHTED = {"Conv", "Gemm", "MatMul"}


def _guard(
    pre: Path,
    best: Path,
    calibration: np.ndarray,
    check: np.ndarray,
    batch_size: int,
    min_agreement: float,
    say: Progress,
) -> QuantizeReport:
    """The accuracy guard of :func:`quantize_package`; leaves the chosen model in ``best``."""
    reference = _top1(pre, check)
    agreement = float((_top1(best, check) == reference).mean())
    report = QuantizeReport(agreement, len(check))
    if agreement >= min_agreement:
        return report
    tmp = best.parent
    say(f"int8 agrees with fp32 on {agreement:.1%} of {len(check)} images; finding sensitive nodes")
    ranked = sensitive_nodes(pre, best, check[:32], tmp)
    for k in INT8_FLOAT_STEPS:
        if k > len(ranked):
            break
        trial = tmp / f"int8-float{k}.onnx"
        _quantize_static(pre, trial, calibration, batch_size, exclude=ranked[:k])
        got = float((_top1(trial, check) == reference).mean())
        report.rounds += 1
        say(f"  {k} sensitive nodes in float: {got:.1%} agreement")
        if got > report.agreement:
            os.replace(trial, best)
            report.agreement, report.float_nodes = got, ranked[:k]
        if got >= min_agreement:
            break
    return report


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
        "resize_how": RESIZE_HOW.get(spec.resize, spec.resize),
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
    models: dict[str, Path | bytes],
    samples: Iterable[Sample],
    pkg: ModelPackage,
    *,
    batch_size: int = 32,
) -> tuple[dict[str, float], int]:
    """Accuracy of each ONNX model on ``(image, labels)`` samples, decoding every image once.

    Single-label: top-1 accuracy. Multi-label: exact-match (subset) accuracy at the package's
    thresholds (0.5 when none).
    """
    sessions = {k: _cpu_session(p) for k, p in models.items()}
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


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
