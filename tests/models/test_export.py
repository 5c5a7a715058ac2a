"""Export round trips: ONNX fp32, ONNX int8 (static and dynamic), TorchScript, and the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from autovision.errors import ModelError
from autovision.models.export import (
    FORMATS,
    MODEL_FILES,
    export_model,
    export_package,
    static_same_padding,
)
from autovision.models.package import ModelPackage, save_package
from autovision.models.preprocess import RESIZE_HOW, Preprocessing, preprocess
from autovision.models.registry import create_model


@pytest.fixture
def toy_package(tmp_path: Path, trained_toy, toy) -> ModelPackage:
    pkg_dir = save_package(
        tmp_path / "pkg" / "m-toy",
        trained_toy,
        labels=toy.labels,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=toy.spec(),
    )
    return ModelPackage(pkg_dir)


def _ort(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _test_inputs(toy, n_per_class: int = 10) -> tuple[list, list[tuple[str]]]:
    samples = toy.samples(n_per_class, seed=3)
    return [im for im, _ in samples], [(lab,) for _, lab in samples]


def test_each_format_writes_its_files(tmp_path: Path, toy_package: ModelPackage, toy) -> None:
    calibration = [im for im, _ in toy.samples(16, seed=2)]
    for fmt in FORMATS:
        out = tmp_path / fmt
        result = export_package(toy_package, out, format=fmt, calibration=iter(calibration))
        assert result.format == fmt and result.output == out
        assert result.files == [MODEL_FILES[fmt], "labels.txt", "preprocessing.json"]
        assert sorted(p.name for p in out.iterdir()) == sorted(result.files), "no temp files"
        assert (out / "labels.txt").read_text().splitlines() == list(toy.labels)
        spec = json.loads((out / "preprocessing.json").read_text())
        assert Preprocessing.from_dict(spec) == toy_package.preprocessing
        assert spec["input"] == "input" and spec["output"] == "probabilities"
        assert spec["layout"] == "NCHW" and spec["color"] == "RGB"
        assert spec["resize_how"] == RESIZE_HOW[spec["resize"]]
        assert spec["task"] == "single-label" and spec["activation"] == "softmax"
        assert result.accuracy is None  # nothing to evaluate on
    assert (tmp_path / "onnx" / "model.onnx").read_bytes() == toy_package.onnx_path.read_bytes()


def test_int8_is_within_one_point_of_fp32(tmp_path: Path, toy_package: ModelPackage, toy) -> None:
    import onnx

    images, labels = _test_inputs(toy)
    calibration = (im for im, _ in toy.samples(32, seed=2))
    result = export_package(
        toy_package,
        tmp_path / "int8",
        format="onnx-int8",
        calibration=calibration,
        evaluation=zip(images, labels, strict=True),
    )
    assert result.quantization == "static" and result.calibration_images == 64
    assert result.evaluated_images == len(images)
    acc = result.accuracy
    assert acc is not None and set(acc) == {"fp32", "int8"}
    assert acc["fp32"] >= 0.95, "the toy model is trained: accuracy must be meaningful"
    assert abs(acc["fp32"] - acc["int8"]) <= 0.01

    path = tmp_path / "int8" / "model.int8.onnx"
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["autovision.labels"]) == list(toy.labels)
    assert props["autovision.quantization"] == "int8-static"

    x = preprocess(images, toy_package.preprocessing)
    fp32 = toy_package.predict_array(x)
    int8 = _ort(path).run(["probabilities"], {"input": x})[0]
    assert int8.shape == fp32.shape
    assert np.abs(int8 - fp32).max() < 0.1
    assert (int8.argmax(1) == fp32.argmax(1)).all()
    assert path.stat().st_size < 0.5 * toy_package.onnx_path.stat().st_size


def test_int8_guard_keeps_sensitive_nodes_in_float(
    tmp_path: Path, toy_package: ModelPackage, toy
) -> None:
    """Agreement under the bar (here an impossible one) makes the guard quantize again with
    the nodes quantization disturbs most left in float, and keep the best model it saw."""
    import onnx

    from autovision.models.export import quantize_package

    spec = toy_package.preprocessing
    calibration = preprocess([im for im, _ in toy.samples(8, seed=2)], spec)
    check = preprocess([im for im, _ in toy.samples(8, seed=5)], spec)
    path = tmp_path / "model.int8.onnx"
    seen: list[str] = []
    report = quantize_package(
        toy_package,
        path,
        calibration=calibration,
        check=check,
        min_agreement=1.01,
        progress=seen.append,
    )
    assert report.check_images == len(check) and 0.5 <= report.agreement <= 1.0
    assert report.rounds > 1 and any("sensitive nodes" in line for line in seen)
    proto = onnx.load(str(path))
    names = {n.name for n in proto.graph.node}
    assert set(report.float_nodes) <= names, "excluded nodes keep their float names"
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props.get("autovision.float_nodes", "[]")) == report.float_nodes

    relaxed = quantize_package(toy_package, path, calibration=calibration, check=check)
    assert relaxed.agreement >= 0.99 and relaxed.float_nodes == [] and relaxed.rounds == 1


def test_multi_label_accuracy_is_exact_match_at_thresholds(
    tmp_path: Path, trained_toy, toy
) -> None:
    from autovision.models.export import evaluate_onnx

    pkg = ModelPackage(
        save_package(
            tmp_path / "multi",
            trained_toy,
            labels=toy.labels,
            task="multi-label",
            backbone="compact_cnn",
            preprocessing=toy.spec(),
            thresholds=[0.6, 0.4],
        )
    )
    images, labels = _test_inputs(toy, 6)
    labels[0] = (toy.labels[0], toy.labels[1])  # two labels
    labels[1] = ("unknown-label",)  # a label the model does not have: never right
    acc, n = evaluate_onnx({"fp32": pkg.onnx_path}, zip(images, labels, strict=True), pkg)
    probs = pkg.predict_array(preprocess(images, pkg.preprocessing))
    predicted = probs >= np.array([0.6, 0.4])
    target = np.array([[lab in row for lab in toy.labels] for row in labels])
    exact = (predicted == target).all(axis=1)
    exact[1] = False
    assert n == len(images)
    assert acc["fp32"] == pytest.approx(exact.mean())


def test_dynamic_int8_needs_no_calibration(tmp_path: Path, toy_package: ModelPackage, toy) -> None:
    images, labels = _test_inputs(toy, 5)
    result = export_package(
        toy_package,
        tmp_path / "dyn",
        format="onnx-int8",
        quantization="dynamic",
        evaluation=zip(images, labels, strict=True),
    )
    assert result.quantization == "dynamic" and result.calibration_images == 0
    assert abs(result.accuracy["fp32"] - result.accuracy["int8"]) <= 0.01


def test_torchscript_matches_onnx(tmp_path: Path, toy_package: ModelPackage, toy) -> None:
    export_package(toy_package, tmp_path / "ts", format="torchscript")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # "jit is deprecated"
        scripted = torch.jit.load(str(tmp_path / "ts" / "model.torchscript.pt"))
    images, _ = _test_inputs(toy, 3)  # batch 6: traced with 2, the batch stays dynamic
    x = preprocess(images, toy_package.preprocessing)
    with torch.no_grad():
        ts = scripted(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ts, toy_package.predict_array(x), atol=1e-4, rtol=0)
    np.testing.assert_allclose(ts.sum(axis=1), 1.0, atol=1e-5)


def test_bad_requests_are_clear_errors(tmp_path: Path, toy_package: ModelPackage) -> None:
    with pytest.raises(ModelError, match="unknown export format"):
        export_package(toy_package, tmp_path / "x", format="tflite")
    with pytest.raises(ModelError, match="unknown quantization"):
        export_package(toy_package, tmp_path / "x", format="onnx-int8", quantization="fp8")
    with pytest.raises(ModelError, match="calibration images"):
        export_package(toy_package, tmp_path / "x", format="onnx-int8")


def test_static_same_padding_keeps_outputs() -> None:
    from timm.layers.conv2d_same import Conv2dSame

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=4, pretrained=False).eval()
    fixed = static_same_padding(model, 64)
    assert not any(isinstance(m, Conv2dSame) for m in fixed.modules())
    assert any(isinstance(m, Conv2dSame) for m in model.modules()), "the original is untouched"
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_lite0_int8_export_has_static_shapes(tmp_path: Path, toy) -> None:
    """Lite0's TF "same" padding leaves no shape arithmetic in the int8 graph."""
    import onnx

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=2, pretrained=True)
    spec = Preprocessing(input_size=64, mean=(127.0,) * 3, std=(128.0,) * 3)
    pkg = ModelPackage(
        save_package(
            tmp_path / "lite0",
            model,
            labels=toy.labels,
            task="single-label",
            backbone="efficientnet_lite0",
            preprocessing=spec,
        )
    )
    images = [im.resize((64, 64)) for im, _ in toy.samples(8, seed=4)]
    export_package(pkg, tmp_path / "out", format="onnx-int8", calibration=images)
    path = tmp_path / "out" / "model.int8.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"Shape", "Ceil"}, ops
    x = preprocess(images, spec)
    int8 = _ort(path).run(["probabilities"], {"input": x})[0]
    assert np.abs(int8 - pkg.predict_array(x)).max() < 0.15


# ---- from the workspace, and through the CLI -----------------------------------------------


def test_export_model_uses_the_models_dataset(tmp_path: Path, toy_workspace) -> None:
    ws, model_id, _ = toy_workspace()
    result = export_model(ws, model_id, tmp_path / "out", format="onnx-int8", calibration_size=32)
    assert result.notes == []
    assert result.calibration_images == 32
    assert result.guard is not None and result.guard.check_images == 12  # the validation split
    assert result.to_dict()["int8_agreement"] == round(result.guard.agreement, 4)
    assert result.evaluated_images == 40  # the test split, all of it
    assert result.accuracy["fp32"] >= 0.95
    assert abs(result.accuracy["fp32"] - result.accuracy["int8"]) <= 0.01

    limited = export_model(
        ws, model_id, tmp_path / "o2", format="onnx", evaluate=True, eval_limit=8
    )
    assert limited.evaluated_images == 8 and set(limited.accuracy) == {"fp32"}
    assert export_model(ws, model_id, tmp_path / "o3", format="torchscript").accuracy is None


def test_export_model_without_dataset_in_model_json(tmp_path: Path, toy_workspace) -> None:
    ws, model_id, pkg_dir = toy_workspace(meta_dataset=False)
    assert "dataset" not in json.loads((pkg_dir / "model.json").read_text())
    result = export_model(ws, model_id, tmp_path / "out", format="onnx-int8", calibration_size=8)
    assert result.evaluated_images == 40 and result.notes == []  # from the registry row

    ws.register_model(
        "m-orphan", dataset="gone", dataset_version=3, task="single-label", path=pkg_dir
    )
    orphan = export_model(ws, "m-orphan", tmp_path / "o2", format="onnx", evaluate=True)
    assert orphan.accuracy is None
    assert any("gone@3" in note for note in orphan.notes)
    with pytest.raises(ModelError, match="calibration images"):
        export_model(ws, "m-orphan", tmp_path / "o3", format="onnx-int8")


def test_export_model_with_no_test_split(tmp_path: Path, toy_workspace) -> None:
    ws, _, pkg_dir = toy_workspace(meta_dataset=False)
    train_only = [it for it in ws.dataset("toy@1").items if it.split == "train"]
    ws.create_version("toy", train_only, multi_label=False, parent_version=1)
    ws.register_model("m-v2", dataset="toy", dataset_version=2, task="single-label", path=pkg_dir)
    result = export_model(ws, "m-v2", tmp_path / "out", format="onnx-int8", calibration_size=8)
    assert result.calibration_images == 8
    assert result.accuracy is None and result.evaluated_images == 0
    assert result.notes == ["toy@2 has no labeled test images: accuracy not measured"]


def _cli() -> typer.Typer:
    from autovision.cli.export import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    register(app)
    return app


def test_cli_export_int8_json(tmp_path: Path, toy_workspace) -> None:
    ws, model_id, _ = toy_workspace()
    out = tmp_path / "exported"
    args = ["export", model_id, "--format", "onnx-int8", "--output", str(out)]
    res = CliRunner().invoke(_cli(), [*args, "--workspace", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["format"] == "onnx-int8"
    assert payload["files"] == ["model.int8.onnx", "labels.txt", "preprocessing.json"]
    assert all((out / name).is_file() for name in payload["files"])
    acc = payload["accuracy"]
    assert acc["fp32"] >= 0.95 and abs(acc["fp32"] - acc["int8"]) <= 0.01


def test_cli_export_readable_output_and_errors(tmp_path: Path, toy_workspace) -> None:
    ws, model_id, _ = toy_workspace()
    runner = CliRunner()
    base = ["--workspace", str(ws.root), "--output", str(tmp_path / "o")]
    res = runner.invoke(_cli(), ["export", model_id, "--format", "torchscript", *base])
    assert res.exit_code == 0, res.output
    assert "model.torchscript.pt" in res.stdout and "labels.txt" in res.stdout

    res = runner.invoke(_cli(), ["export", "m-nope", *base])
    assert res.exit_code == 1
    assert "no model 'm-nope'" in res.stderr

    res = runner.invoke(_cli(), ["export", model_id, "--format", "tflite", *base])
    assert res.exit_code == 2


def test_main_app_mounts_export() -> None:
    from autovision.cli.main import app

    res = CliRunner().invoke(app, ["export", "--help"])
    assert res.exit_code == 0
    assert "--format" in res.stdout and "onnx-int8" in res.stdout
