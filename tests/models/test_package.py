"""The model package: round trip (ONNX vs PyTorch), model.json, no pickle, atomic writes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autovision.errors import ModelError
from autovision.models import package as package_mod
from autovision.models.package import ModelPackage, save_package
from autovision.models.preprocess import Preprocessing, preprocess
from autovision.models.registry import create_model, get_backbone_cfg

LABELS = ("ant", "bee", "cicada")
# pickle protocol 2+ starts with 0x80 <protocol>; torch.save archives are zip files
PICKLE_MAGICS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def _model(backbone: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(backbone, num_classes=len(LABELS), pretrained=backbone != "compact_cnn")
    with torch.no_grad():  # a sharper head so the probabilities are far from uniform
        model.classifier.weight.mul_(20)
        model.classifier.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
    return model.eval()


def _spec(backbone: str, size: int) -> Preprocessing:
    cfg = get_backbone_cfg(backbone)
    return Preprocessing(input_size=size, mean=cfg.mean, std=cfg.std, resize="center_crop")


def _images(toy, n: int = 5) -> list[Image.Image]:
    """Toy images of odd sizes, so resizing is part of the round trip."""
    sizes = [(40, 24), (32, 32), (17, 50), (64, 48), (33, 31)]
    return [toy.image(i % 2, 900 + i).resize(sizes[i % len(sizes)]) for i in range(n)]


def _save(tmp_path: Path, backbone: str, task: str, size: int, **kw) -> tuple[Path, object]:
    model = _model(backbone)
    pkg_dir = save_package(
        tmp_path / "models" / "m-test",
        model,
        labels=LABELS,
        task=task,
        backbone=backbone,
        preprocessing=_spec(backbone, size),
        thresholds=[0.3, 0.5, 0.7] if task == "multi-label" else None,
        meta={"dataset": {"name": "bugs", "version": 2, "content_hash": "abc"}, "seed": 7, **kw},
    )
    return pkg_dir, model


CASES = [
    pytest.param("compact_cnn", "single-label", 32, id="cnn-single"),
    pytest.param("compact_cnn", "multi-label", 32, id="cnn-multi"),
    pytest.param("efficientnet_lite0", "single-label", 64, id="lite0-single"),
    pytest.param("efficientnet_lite0", "multi-label", 64, id="lite0-multi"),
]


@pytest.mark.parametrize(("backbone", "task", "size"), CASES)
def test_round_trip_onnx_matches_pytorch(tmp_path: Path, toy, backbone, task, size) -> None:
    pkg_dir, model = _save(tmp_path, backbone, task, size)
    pkg = ModelPackage.load(pkg_dir)
    images = _images(toy)

    probs = pkg.predict_proba(images)
    x = torch.from_numpy(preprocess(images, pkg.preprocessing))
    with torch.no_grad():
        logits = model(x)
    expected = (logits.softmax(-1) if task == "single-label" else logits.sigmoid()).numpy()
    assert probs.shape == (len(images), len(LABELS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=1e-4, rtol=0)
    assert probs.max() - probs.min() > 0.2, "probabilities should not be all alike"
    if task == "single-label":
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert ((probs >= 0) & (probs <= 1)).all()

    # batching does not change anything, empty input gives an empty answer
    np.testing.assert_allclose(pkg.predict_proba(images, batch_size=2), probs, atol=1e-6)
    assert pkg.predict_proba([]).shape == (0, len(LABELS))

    # the safetensors weights rebuild the same PyTorch model
    rebuilt = pkg.torch_model()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), logits, atol=1e-5, rtol=0)


def test_decide_uses_argmax_or_thresholds(tmp_path: Path) -> None:
    single = ModelPackage(_save(tmp_path / "s", "compact_cnn", "single-label", 32)[0])
    multi = ModelPackage(_save(tmp_path / "m", "compact_cnn", "multi-label", 32)[0])
    probs = np.array([[0.2, 0.6, 0.65], [0.31, 0.1, 0.9]], dtype=np.float32)
    assert single.decide(probs) == [[2], [2]]
    assert multi.decide(probs) == [[1], [0, 2]]


def test_model_json_fields(tmp_path: Path) -> None:
    pkg_dir, _ = _save(tmp_path, "compact_cnn", "multi-label", 32, hyperparameters={"lr": 0.01})
    meta = json.loads((pkg_dir / "model.json").read_text())
    assert meta["format_version"] == package_mod.FORMAT_VERSION
    assert meta["id"] == "m-test" == pkg_dir.name
    assert meta["labels"] == list(LABELS)
    assert meta["task"] == "multi-label"
    assert meta["thresholds"] == [0.3, 0.5, 0.7]
    assert meta["architecture"] == {"backbone": "compact_cnn", "num_classes": 3}
    assert Preprocessing.from_dict(meta["preprocessing"]) == _spec("compact_cnn", 32)
    assert datetime.fromisoformat(meta["created_at"]).tzinfo is not None
    assert {"python", "torch", "onnxruntime", "timm"} <= set(meta["library_versions"])
    assert meta["files"] == {"onnx": "model.onnx", "weights": "weights.safetensors"}
    assert meta["dataset"] == {"name": "bugs", "version": 2, "content_hash": "abc"}
    assert meta["seed"] == 7 and meta["hyperparameters"] == {"lr": 0.01}

    pkg = ModelPackage(pkg_dir)
    assert (pkg.id, pkg.labels, pkg.task) == ("m-test", list(LABELS), "multi-label")
    assert pkg.thresholds == [0.3, 0.5, 0.7]
    assert pkg.preprocessing == _spec("compact_cnn", 32)


def test_onnx_graph_contract(tmp_path: Path) -> None:
    import onnx

    pkg_dir, _ = _save(tmp_path, "compact_cnn", "single-label", 32)
    proto = onnx.load(str(pkg_dir / "model.onnx"))
    onnx.checker.check_model(proto)
    (inp,), (out, emb) = proto.graph.input, proto.graph.output
    assert inp.name == package_mod.ONNX_INPUT and out.name == package_mod.ONNX_OUTPUT
    assert emb.name == package_mod.ONNX_EMBEDDING
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [3, 32, 32] and isinstance(dims[0], str), "dynamic batch, fixed image"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["autovision.labels"]) == list(LABELS)
    assert props["autovision.task"] == "single-label"
    assert Preprocessing.from_dict(json.loads(props["autovision.preprocessing"])) == _spec(
        "compact_cnn", 32
    )
    assert props["autovision.model_id"] == "m-test"


def assert_no_pickle(directory: Path) -> list[Path]:
    """Every file under ``directory`` is pickle-free; returns the files checked."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        head = path.read_bytes()[:4]
        assert not head.startswith(PICKLE_MAGICS), f"{path.name} looks like a pickle or zip"
        assert not path.name.endswith((".pt", ".pth", ".pkl", ".pickle", ".bin"))
    return files


def test_package_holds_no_pickle(tmp_path: Path) -> None:
    import onnx
    from safetensors import safe_open

    pkg_dir, model = _save(tmp_path, "compact_cnn", "single-label", 32)
    files = assert_no_pickle(pkg_dir)
    assert {p.name for p in files} == {"model.onnx", "weights.safetensors", "model.json"}
    json.loads((pkg_dir / "model.json").read_text())
    onnx.checker.check_model(onnx.load(str(pkg_dir / "model.onnx")))
    with safe_open(str(pkg_dir / "weights.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg_dir, _ = _save(tmp_path, "compact_cnn", "single-label", 32)
    parent = pkg_dir.parent
    assert [p.name for p in parent.iterdir()] == ["m-test"], "no temporary directory left"
    before = (pkg_dir / "model.json").read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setattr(package_mod, "onnx_bytes", boom)
    with pytest.raises(RuntimeError, match="export failed"):
        _save(tmp_path, "compact_cnn", "multi-label", 32)
    assert [p.name for p in parent.iterdir()] == ["m-test"], "failed save leaves no tmp dir"
    assert (pkg_dir / "model.json").read_text() == before, "failed save keeps the old package"

    with pytest.raises(ModelError, match="unknown task"):
        _save(tmp_path, "compact_cnn", "multi-class", 32)
    assert [p.name for p in parent.iterdir()] == ["m-test"]

    monkeypatch.undo()
    _save(tmp_path, "compact_cnn", "multi-label", 32)  # a new save replaces the old package
    assert json.loads((pkg_dir / "model.json").read_text())["task"] == "multi-label"
    assert [p.name for p in parent.iterdir()] == ["m-test"]


def test_loading_a_non_package_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model package"):
        ModelPackage.load(tmp_path)
