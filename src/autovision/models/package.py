"""The model package: a directory with no pickle in it.

- ``model.onnx``: input ``input`` float32 [N, 3, S, S] (already preprocessed), outputs
  ``probabilities`` float32 [N, L] (softmax for single-label, sigmoid for multi-label) and
  ``embedding`` float32 [N, D] (the pooled features before the classifier head, for drift
  detection; packages written before it lack it); labels, task and preprocessing are repeated
  in the ONNX metadata.
- ``weights.safetensors``: the PyTorch state dict (logits model, no activation).
- ``model.json``: labels, task, thresholds, architecture, preprocessing, hyperparameters,
  dataset lineage, metrics, timings, seed, stop reason, library versions.

With an encryption key configured (:mod:`autovision.security.crypto`) ``model.onnx`` and
``weights.safetensors`` are written encrypted and decrypted in memory on load; ``model.json``
(labels, metrics, lineage) stays plaintext so packages can be listed without the key.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import uuid
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autovision.errors import ModelError
from autovision.models.preprocess import Preprocessing, preprocess

FORMAT_VERSION = 1
TASKS = ("single-label", "multi-label")
ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
ONNX_EMBEDDING = "embedding"
ONNX_OPSET = 18


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("autovision", "torch", "timm", "onnx", "onnxruntime", "optuna", "scikit-learn"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def new_model_id(prefix: str = "m") -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class _WithActivation:
    """Wrap a logits model with softmax / sigmoid for export; with ``embedding`` (and a
    timm-style ``forward_features`` / ``forward_head``) it also returns the pooled pre-logit
    features, computed in the same pass."""

    @staticmethod
    def build(model: Any, task: str, *, embedding: bool = False) -> Any:
        import torch
        from torch import nn

        act: nn.Module = nn.Softmax(dim=-1) if task == "single-label" else nn.Sigmoid()
        with_emb = embedding and has_embedding(model)

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model
                self.act = act

            def forward(self, x: torch.Tensor) -> Any:
                if not with_emb:
                    return self.act(self.model(x))
                feats = self.model.forward_features(x)
                logits = self.model.forward_head(feats)
                return self.act(logits), self.model.forward_head(feats, pre_logits=True)

        wrapped = Wrapped().eval()
        wrapped.with_embedding = with_emb  # type: ignore[attr-defined]
        return wrapped


def has_embedding(model: Any) -> bool:
    """Whether ``model`` offers timm's ``forward_features`` / ``forward_head(pre_logits=)``."""
    return callable(getattr(model, "forward_features", None)) and callable(
        getattr(model, "forward_head", None)
    )


def read_model_file(path: str | os.PathLike[str]) -> bytes:
    """Plaintext bytes of a package or checkpoint file (``model.onnx``, ``*.safetensors``),
    decrypted with the configured key when it is encrypted."""
    from autovision.security import crypto

    path = Path(path)
    return crypto.read_file(path, _aad(path.name), crypto.configured_key())


def write_model_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a package or checkpoint file atomically, encrypted when a key is configured."""
    from autovision.security import crypto

    path = Path(path)
    crypto.write_file(path, data, _aad(path.name), crypto.configured_key())


def _aad(name: str) -> bytes:
    return b"autovision-model-file\0" + name.encode()


def onnx_bytes(
    model: Any, task: str, spec: Preprocessing, meta: dict, *, embedding: bool = True
) -> bytes:
    """Logits model + activation as ONNX bytes (legacy exporter: fast, exact), with labels,
    task and preprocessing in its metadata; with ``embedding`` a second output ``embedding``
    (pooled pre-logit features, same pass) when the model offers it."""
    import io

    import onnx
    import torch

    wrapped = _WithActivation.build(model, task, embedding=embedding)
    outputs = [ONNX_OUTPUT, ONNX_EMBEDDING] if wrapped.with_embedding else [ONNX_OUTPUT]
    x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (x,),
            buf,
            input_names=[ONNX_INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in (ONNX_INPUT, *outputs)},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in {
        "autovision.labels": json.dumps(meta["labels"]),
        "autovision.task": task,
        "autovision.preprocessing": json.dumps(spec.to_dict()),
        "autovision.model_id": meta.get("id", ""),
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def export_onnx(
    model: Any, task: str, spec: Preprocessing, path: Path, meta: dict, *, embedding: bool = True
) -> None:
    """:func:`onnx_bytes` written to ``path`` (plaintext)."""
    Path(path).write_bytes(onnx_bytes(model, task, spec, meta, embedding=embedding))


def save_package(
    directory: str | os.PathLike[str],
    model: Any,
    *,
    labels: Sequence[str],
    task: str,
    backbone: str,
    preprocessing: Preprocessing,
    thresholds: Sequence[float] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a package atomically (a temporary directory, then rename) and return its path.

    ``model`` is a logits ``nn.Module`` built by :func:`autovision.models.registry.create_model`
    with ``num_classes=len(labels)``; ``meta`` adds keys to ``model.json`` (hyperparameters,
    dataset, validation, training_seconds, seed, stop_reason...).
    """
    from safetensors.torch import save

    if task not in TASKS:
        raise ModelError(f"unknown task {task!r}; expected one of {TASKS}")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        model = model.eval().cpu()
        info: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "id": directory.name,
            "labels": list(labels),
            "task": task,
            "thresholds": list(thresholds) if thresholds is not None else None,
            "architecture": {"backbone": backbone, "num_classes": len(labels)},
            "preprocessing": preprocessing.to_dict(),
            "created_at": datetime.now(UTC).isoformat(),
            "library_versions": library_versions(),
            "files": {"onnx": "model.onnx", "weights": "weights.safetensors"},
        }
        info.update(meta or {})
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        write_model_file(tmp / "weights.safetensors", save(state))
        write_model_file(tmp / "model.onnx", onnx_bytes(model, task, preprocessing, info))
        (tmp / "model.json").write_text(json.dumps(info, indent=2, default=str))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


class ModelPackage:
    """A loaded package: ONNX Runtime session created once, ``predict_proba`` on images."""

    def __init__(
        self, path: str | os.PathLike[str], *, threads: int | None = None, spinning: bool = True
    ) -> None:
        self.path = Path(path)
        meta_path = self.path / "model.json"
        if not meta_path.is_file():
            raise ModelError(f"{self.path}: not a model package (no model.json)")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.id: str = self.meta.get("id", self.path.name)
        self.labels: list[str] = list(self.meta["labels"])
        self.task: str = self.meta["task"]
        th = self.meta.get("thresholds")
        self.thresholds: list[float] | None = list(th) if th is not None else None
        self.preprocessing = Preprocessing.from_dict(self.meta["preprocessing"])
        self._threads = threads
        self._spinning = spinning
        self._session: Any = None
        self._has_embedding: bool | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> ModelPackage:
        pkg = cls(path, **kwargs)
        pkg.session  # noqa: B018 - create the session now, once
        return pkg

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    def onnx_bytes(self) -> bytes:
        """The ONNX model, decrypted when the package is encrypted."""
        return read_model_file(self.onnx_path)

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = self.new_session(threads=self._threads, spinning=self._spinning)
        return self._session

    def new_session(self, *, threads: int | None = None, spinning: bool = True) -> Any:
        """Another ONNX Runtime session of this model (``threads``: intra-op threads, None:
        every core; ``spinning``: idle threads busy-wait, lower latency for more CPU)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(self.onnx_bytes(), opts, providers=_providers(ort))

    @property
    def on_gpu(self) -> bool:
        return "CUDAExecutionProvider" in self.session.get_providers()

    def predict_array(self, x: np.ndarray, session: Any = None) -> np.ndarray:
        """Preprocessed float32 [N, 3, S, S] -> probabilities [N, L] (with ``session``, one
        from :meth:`new_session`, instead of the package's own)."""
        if len(x) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        sess = self.session if session is None else session
        return sess.run([ONNX_OUTPUT], {ONNX_INPUT: x.astype(np.float32, copy=False)})[0]

    def has_embedding(self, session: Any = None) -> bool:
        """Whether the ONNX graph has the ``embedding`` output (packages before it do not)."""
        if session is not None:
            return any(o.name == ONNX_EMBEDDING for o in session.get_outputs())
        if self._has_embedding is None:
            self._has_embedding = self.has_embedding(self.session)
        return self._has_embedding

    def predict_with_embeddings(
        self, x: np.ndarray, session: Any = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed float32 [N, 3, S, S] -> (probabilities [N, L], embeddings [N, D] or
        None for a package without the output), in one run of the graph."""
        sess = self.session if session is None else session
        with_emb = self.has_embedding(session)
        if len(x) == 0:
            probs = np.zeros((0, len(self.labels)), dtype=np.float32)
            if not with_emb:
                return probs, None
            out = next(o for o in sess.get_outputs() if o.name == ONNX_EMBEDDING)
            dim = out.shape[-1] if isinstance(out.shape[-1], int) else 0
            return probs, np.zeros((0, dim), dtype=np.float32)
        if not with_emb:
            return self.predict_array(x, session), None
        probs, emb = sess.run(
            [ONNX_OUTPUT, ONNX_EMBEDDING], {ONNX_INPUT: x.astype(np.float32, copy=False)}
        )
        return probs, emb

    def predict_proba(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """RGB PIL images -> probabilities [N, L]."""
        out = [
            self.predict_array(preprocess(images[i : i + batch_size], self.preprocessing))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else self.predict_array(np.zeros((0,)))

    def decide(self, probs: np.ndarray) -> list[list[int]]:
        """Predicted label indices per row: argmax (single-label) or over threshold (multi)."""
        if self.task == "single-label":
            return [[int(i)] for i in probs.argmax(axis=1)]
        th = np.asarray(self.thresholds or [0.5] * len(self.labels))
        return [list(np.flatnonzero(row >= th)) for row in probs]

    def torch_model(self) -> Any:
        """Rebuild the PyTorch logits model from ``weights.safetensors`` (an ensemble or a
        model with test-time flips: the :class:`~autovision.models.ensemble.CombinedModel`)."""
        from safetensors.torch import load

        from autovision.models.registry import create_model

        arch = self.meta["architecture"]
        if arch.get("ensemble"):
            from autovision.models.ensemble import build

            model = build(arch, self.task)
        else:
            model = create_model(
                arch["backbone"], num_classes=arch["num_classes"], pretrained=False
            )
        model.load_state_dict(load(read_model_file(self.path / "weights.safetensors")))
        return model.eval()


def _providers(ort: Any) -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
