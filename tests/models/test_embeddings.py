"""The ONNX ``embedding`` output: pooled pre-logit features in the same pass as the
probabilities; old packages without it keep working."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.models import package as package_mod
from autovision.models.package import ModelPackage, onnx_bytes, save_package
from autovision.models.preprocess import Preprocessing, preprocess
from autovision.models.registry import create_model, embed, get_backbone_cfg
from autovision.security import crypto

LABELS = ("a", "b", "c")


def _save(tmp_path: Path, backbone: str, size: int, task: str = "single-label"):
    torch.manual_seed(0)
    model = create_model(backbone, num_classes=len(LABELS), pretrained=False).eval()
    cfg = get_backbone_cfg(backbone)
    spec = Preprocessing(input_size=size, mean=cfg.mean, std=cfg.std)
    pkg_dir = save_package(
        tmp_path / "m-emb",
        model,
        labels=LABELS,
        task=task,
        backbone=backbone,
        preprocessing=spec,
        thresholds=[0.5] * 3 if task == "multi-label" else None,
    )
    return pkg_dir, model


@pytest.mark.parametrize(
    ("backbone", "size", "task", "dim"),
    [
        pytest.param("compact_cnn", 32, "single-label", 128, id="cnn"),
        pytest.param("efficientnet_lite0", 64, "multi-label", 1280, id="lite0"),
    ],
)
def test_embedding_round_trip_matches_pytorch(tmp_path, toy, backbone, size, task, dim) -> None:
    pkg_dir, model = _save(tmp_path, backbone, size, task)
    pkg = ModelPackage.load(pkg_dir)
    images = [toy.image(i % 2, 50 + i) for i in range(4)]
    x = preprocess(images, pkg.preprocessing)

    probs, emb = pkg.predict_with_embeddings(x)
    with torch.no_grad():
        expected = embed(model, torch.from_numpy(x)).numpy()
    assert emb is not None and emb.shape == (4, dim) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(probs, pkg.predict_array(x), atol=1e-6)  # unchanged API
    assert pkg.has_embedding()

    empty_p, empty_e = pkg.predict_with_embeddings(np.zeros((0, 3, size, size), np.float32))
    assert empty_p.shape == (0, 3) and empty_e is not None and empty_e.shape == (0, dim)


def test_old_package_without_embedding_still_works(tmp_path, toy) -> None:
    pkg_dir, model = _save(tmp_path, "compact_cnn", 32)
    pkg = ModelPackage(pkg_dir)
    old = onnx_bytes(model, "single-label", pkg.preprocessing, pkg.meta, embedding=False)
    (pkg_dir / "model.onnx").write_bytes(old)  # as packages were written before the output
    pkg = ModelPackage.load(pkg_dir)
    x = preprocess([toy.image(0, 1), toy.image(1, 2)], pkg.preprocessing)
    probs, emb = pkg.predict_with_embeddings(x)
    assert emb is None and not pkg.has_embedding()
    np.testing.assert_allclose(probs, pkg.predict_array(x), atol=1e-6)
    assert [o.name for o in pkg.session.get_outputs()] == [package_mod.ONNX_OUTPUT]


def test_embedding_in_an_encrypted_package(tmp_path, toy, monkeypatch) -> None:
    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    pkg_dir, _ = _save(tmp_path, "compact_cnn", 32)
    assert (pkg_dir / "model.onnx").read_bytes().startswith(crypto.MAGIC)
    pkg = ModelPackage.load(pkg_dir)
    x = preprocess([toy.image(0, 3)], pkg.preprocessing)
    probs, emb = pkg.predict_with_embeddings(x)
    assert probs.shape == (1, 3) and emb is not None and emb.shape == (1, 128)


def test_a_separate_session_gives_the_same_embeddings(tmp_path, toy) -> None:
    pkg_dir, _ = _save(tmp_path, "compact_cnn", 32)
    pkg = ModelPackage.load(pkg_dir)
    x = preprocess([toy.image(1, 4)], pkg.preprocessing)
    other = pkg.new_session(threads=1)
    np.testing.assert_allclose(
        pkg.predict_with_embeddings(x, other)[1], pkg.predict_with_embeddings(x)[1], atol=1e-6
    )
