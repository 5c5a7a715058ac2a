"""One ONNX graph from several members: weighted mean, shared backbone, flips, int8."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from autovision.models.ensemble import Member, architecture, combine, inference_times
from autovision.models.package import ModelPackage, onnx_bytes, save_package
from autovision.models.preprocess import Preprocessing
from autovision.models.registry import create_model

LABELS = ["a", "b", "c"]
SIZE = 16
MEAN, STD = (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)
SPEC = Preprocessing(SIZE, mean=MEAN, std=STD)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False).eval()
    with torch.no_grad():  # BN statistics away from identity, so members differ in them too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _other_head(model: torch.nn.Module, seed: int, std: float = 0.5) -> torch.nn.Module:
    torch.manual_seed(seed)
    out = copy.deepcopy(model)
    torch.nn.init.normal_(out.classifier.weight, std=std)
    return out


def _run(model_bytes: bytes, x: np.ndarray, output: str = "probabilities") -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run([output], {"input": x})[0]


def _x(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)


def _onnx(model: torch.nn.Module, task: str = "single-label") -> bytes:
    return onnx_bytes(model, task, SPEC, {"labels": LABELS})


def _convs(model_bytes: bytes) -> int:
    return sum(n.op_type == "Conv" for n in onnx.load_from_string(model_bytes).graph.node)


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_combined_graph_is_the_weighted_mean_of_its_members(task: str) -> None:
    a, b = _model(1), _model(2)
    c = _other_head(a, 3)  # a linear head on a's backbone
    members = [Member(m, "compact_cnn", w, MEAN, STD) for m, w in ((a, 3), (b, 2), (c, 1))]
    combined = combine(members, task=task)
    assert len(combined.backbones) == 2 and combined.groups == [0, 1, 0]
    x = _x()
    got = _run(_onnx(combined, task), x)
    want = sum(w * _run(_onnx(m, task), x) for m, w in ((a, 0.5), (b, 2 / 6), (c, 1 / 6)))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the shared backbone is computed once: two backbones' convolutions, not three
    assert _convs(_onnx(combined, task)) == 2 * _convs(_onnx(a, task))
    # the embedding output is the first member's
    emb = _run(_onnx(combined, task), x, "embedding")
    np.testing.assert_allclose(emb, _run(_onnx(a, task), x, "embedding"), atol=1e-5)
    # the first member alone, as a plain model (a base model for retraining)
    with torch.no_grad():
        first = combined.main_model()(torch.from_numpy(x))
        np.testing.assert_allclose(first.numpy(), a(torch.from_numpy(x)).numpy(), atol=1e-5)


class _LeftRight(torch.nn.Module):
    """A model without the timm split that tells the left half of an image from the right."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, len(LABELS))
        torch.manual_seed(0)
        torch.nn.init.normal_(self.fc.weight, std=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        sides = torch.stack([x[..., :half].mean((1, 2, 3)), x[..., half:].mean((1, 2, 3))], 1)
        return self.fc(sides)


@pytest.mark.parametrize("make", [lambda: _model(4), _LeftRight], ids=["compact_cnn", "custom"])
def test_flips_are_the_mean_of_the_two_passes(make) -> None:
    a = make().eval()
    combined = combine([Member(a, "compact_cnn", 1.0, MEAN, STD)], task="single-label", tta=True)
    x = _x(seed=1)
    x[..., : SIZE // 3] += 2.0  # a bright left edge: the mirror image differs
    got = _run(_onnx(combined), x)
    single = _onnx(a)
    flipped = _run(single, np.ascontiguousarray(x[..., ::-1]))
    np.testing.assert_allclose(got, 0.5 * (_run(single, x) + flipped), atol=1e-5)
    ops = {n.op_type for n in onnx.load_from_string(_onnx(combined)).graph.node}
    assert "Slice" in ops or "ReverseSequence" in ops
    if isinstance(a, _LeftRight):
        assert np.abs(_run(single, x) - flipped).max() > 0.05  # the test can tell


def test_a_member_with_another_normalisation_is_corrected_in_the_graph() -> None:
    a, b = _model(5), _model(6)
    mean_b, std_b = (120.0, 110.0, 100.0), (60.0, 70.0, 80.0)
    members = [
        Member(a, "compact_cnn", 1.0, MEAN, STD),
        Member(b, "compact_cnn", 1.0, mean_b, std_b),
    ]
    combined = combine(members, task="single-label")
    raw = np.random.default_rng(2).uniform(0, 255, (4, 3, SIZE, SIZE)).astype(np.float32)

    def norm(mean, std):
        return (
            (raw - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
        ).astype(np.float32)

    got = _run(_onnx(combined), norm(MEAN, STD))
    want = 0.5 * (_run(_onnx(a), norm(MEAN, STD)) + _run(_onnx(b), norm(mean_b, std_b)))
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.fixture(scope="module")
def combined_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    a, b = _model(7), _model(8)
    c = _other_head(a, 9)
    members = [
        Member(m, "compact_cnn", w, MEAN, STD, trial=t)
        for t, (m, w) in enumerate(((a, 0.5), (b, 0.3), (c, 0.2)))
    ]
    combined = combine(members, task="single-label", tta=True)
    path = tmp_path_factory.mktemp("pkg") / "ens"
    return save_package(
        path,
        combined,
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=SPEC,
        meta={
            "architecture": architecture(combined, members, len(LABELS)),
            "ensemble": {"members": [0, 1, 2]},
            "tta": {"enabled": True},
        },
    )


def test_package_round_trip(combined_package: Path) -> None:
    pkg = ModelPackage.load(combined_package)
    meta = json.loads((combined_package / "model.json").read_text())
    assert meta["architecture"]["ensemble"]["tta"] is True
    assert [m["group"] for m in meta["architecture"]["ensemble"]["members"]] == [0, 1, 0]
    x = _x(seed=3)
    rebuilt = pkg.torch_model()
    with torch.no_grad():
        torch_probs = torch.softmax(rebuilt(torch.from_numpy(x)), -1).numpy()
    np.testing.assert_allclose(pkg.predict_array(x), torch_probs, atol=1e-5)
    np.testing.assert_allclose(pkg.predict_array(x).sum(1), 1.0, atol=1e-5)
    probs, emb = pkg.predict_with_embeddings(x)
    assert probs.shape == (6, 3) and emb is not None and emb.shape == (6, 128)


def test_int8_quantize_of_a_combined_package_runs(tmp_path: Path, combined_package: Path) -> None:
    from autovision.models.export import quantize_package

    pkg = ModelPackage.load(combined_package)
    x = _x(16, seed=4)
    out = tmp_path / "model.int8.onnx"
    quantize_package(pkg, out, calibration=x, check=x)
    q = _run(out.read_bytes(), x)
    assert q.shape == (16, 3) and np.isfinite(q).all()
    assert (q.argmax(1) == pkg.predict_array(x).argmax(1)).mean() >= 0.75


def test_inference_times_ranks_a_bigger_graph_slower() -> None:
    a, b = _model(10), _model(11)
    single = _onnx(a)
    pair = _onnx(
        combine(
            [Member(m, "compact_cnn", 1.0, MEAN, STD) for m in (a, b)],
            task="single-label",
            tta=True,
        )
    )
    t1, t4 = inference_times([single, pair], SIZE, repeats=9)
    assert t1 > 0 and t4 > 2.0 * t1  # four backbone passes against one
