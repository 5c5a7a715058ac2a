"""Encryption at rest in a workspace: blobs, model packages and checkpoints, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autovision.errors import EncryptionError
from autovision.security import crypto
from autovision.workspace import Workspace

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff")
TINY_SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 3],
    "batch_size": 16,
}


def _new_key(monkeypatch: pytest.MonkeyPatch) -> crypto.Key:
    text = crypto.new_key()
    monkeypatch.setenv(crypto.ENV_KEY, text)
    return crypto.parse_key(text)


def _blob_files(ws: Workspace) -> list[Path]:
    return [p for p in Path(ws.blobs.root).rglob("*") if p.is_file()]


def _assert_no_image_in(files: list[Path], plaintexts: list[bytes] = ()) -> None:
    assert files
    for f in files:
        raw = f.read_bytes()
        assert raw.startswith(crypto.MAGIC), f
        assert not any(m in raw for m in IMAGE_MAGIC), f"image header in {f}"
        assert not any(p[8:40] in raw for p in plaintexts), f"plaintext in {f}"


def test_blobs_are_encrypted_on_disk(tmp_path, monkeypatch, image_bytes) -> None:
    key = _new_key(monkeypatch)
    ws = Workspace(tmp_path / "ws")
    images = [image_bytes(i % 3, 32, i, "PNG" if i % 2 else "JPEG") for i in range(6)]
    shas = [ws.blobs.put(b) for b in images]
    assert shas[0] == crypto.hashlib.sha256(images[0]).hexdigest()  # address: plaintext sha
    assert [ws.blobs.get(s) for s in shas] == images
    _assert_no_image_in(_blob_files(ws), images)
    assert {crypto.key_id_of(f.read_bytes()) for f in _blob_files(ws)} == {key.id}
    assert not any(
        key.secret in f.read_bytes() for f in (tmp_path / "ws").rglob("*") if f.is_file()
    )


def test_wrong_or_missing_key_is_a_clear_error(tmp_path, monkeypatch, image_bytes) -> None:
    key = _new_key(monkeypatch)
    sha = Workspace(tmp_path / "ws").blobs.put(image_bytes())
    other = _new_key(monkeypatch)
    with pytest.raises(EncryptionError) as err:
        Workspace(tmp_path / "ws").blobs.get(sha)
    assert f"encrypted with key id {key.id}" in str(err.value)
    assert f"the configured key is {other.id}" in str(err.value) and sha in str(err.value)
    monkeypatch.delenv(crypto.ENV_KEY)
    with pytest.raises(EncryptionError, match=f"{sha} is encrypted .*AUTOVISION_ENCRYPTION_KEY"):
        Workspace(tmp_path / "ws").blobs.get(sha)


def test_a_swapped_blob_is_refused(tmp_path, monkeypatch, image_bytes) -> None:
    _new_key(monkeypatch)
    ws = Workspace(tmp_path / "ws")
    a, b = ws.blobs.put(image_bytes(0)), ws.blobs.put(image_bytes(1))
    Path(ws.blobs.local_path(a)).write_bytes(Path(ws.blobs.local_path(b)).read_bytes())
    with pytest.raises(EncryptionError, match="swapped"):
        ws.blobs.get(a)


def test_no_key_changes_nothing(workspace, image_bytes) -> None:
    data = image_bytes()
    sha = workspace.blobs.put(data)
    assert Path(workspace.blobs.local_path(sha)).read_bytes() == data


def test_plaintext_blobs_read_with_a_key_and_migrate(tmp_path, monkeypatch, image_bytes) -> None:
    data = image_bytes()
    sha = Workspace(tmp_path / "ws").blobs.put(data)
    _new_key(monkeypatch)
    ws = Workspace(tmp_path / "ws")
    assert ws.blobs.get(sha) == data  # written before the key was set: still readable
    res = CliRunner().invoke(_app(), ["encryption", "migrate", "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["blobs"] == 1
    _assert_no_image_in(_blob_files(ws), [data])
    assert ws.blobs.get(sha) == data


def test_model_package_predicts_the_same_encrypted(tmp_path, monkeypatch, make_image) -> None:
    import torch

    from autovision.models.export import export_package
    from autovision.models.package import ModelPackage, save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=3, pretrained=False)
    spec = Preprocessing(input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    args = dict(labels=("r", "g", "b"), task="single-label", backbone="compact_cnn")
    plain = ModelPackage.load(save_package(tmp_path / "plain", model, **args, preprocessing=spec))
    key = _new_key(monkeypatch)
    path = save_package(tmp_path / "enc", model, **args, preprocessing=spec)
    for name in ("model.onnx", "weights.safetensors"):
        raw = (path / name).read_bytes()
        assert raw.startswith(crypto.MAGIC) and crypto.key_id_of(raw) == key.id
    assert json.loads((path / "model.json").read_text())["labels"] == ["r", "g", "b"]

    images = [make_image(i % 3, 24, i) for i in range(4)]
    enc = ModelPackage.load(path)
    np.testing.assert_allclose(enc.predict_proba(images), plain.predict_proba(images), atol=1e-6)
    state = enc.torch_model().state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    # export is for the edge device: plaintext ONNX
    export_package(enc, tmp_path / "out", format="onnx")
    exported = (tmp_path / "out" / "model.onnx").read_bytes()
    assert exported == enc.onnx_bytes() and not crypto.is_encrypted(exported)

    monkeypatch.delenv(crypto.ENV_KEY)
    with pytest.raises(EncryptionError, match=f"model.onnx is encrypted \\(key id {key.id}\\)"):
        ModelPackage.load(path)


def _app():
    from autovision.cli.main import app

    return app


@pytest.mark.slow
def test_import_train_predict_with_a_key_file(tmp_path, monkeypatch, image_folder) -> None:
    """The importer's worker processes, the image cache's decoding workers, training, the
    run checkpoints and batch prediction all work with the key given as ``--key-file``."""
    from autovision.data.importer import import_dataset
    from autovision.search import cache, train

    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(TINY_SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    monkeypatch.setattr(cache, "PARALLEL_MIN_ITEMS", 1)  # the cache's worker processes too
    monkeypatch.setattr(cache, "_workers", lambda: 2)
    parallel = []
    decode_parallel = cache._decode_parallel
    monkeypatch.setattr(
        cache, "_decode_parallel", lambda *a: parallel.append(1) or decode_parallel(*a)
    )
    key_file = tmp_path / "secrets" / "av.key"
    key_file.parent.mkdir()
    key_file.write_text(crypto.new_key() + "\n")
    monkeypatch.setenv(crypto.ENV_KEY_FILE, "")  # restored after the CLI sets it
    src = image_folder(labels=("cat", "dog"), per_label=32, size=16)

    runner = CliRunner()
    ws_dir = tmp_path / "ws"
    res = runner.invoke(_app(), ["--key-file", str(key_file), "dataset", "list", "-w", str(ws_dir)])
    assert res.exit_code == 0, res.output
    ws = Workspace(ws_dir)
    assert ws.blobs.key is not None
    imported = import_dataset(ws, "pets", src, workers=2)  # 64 images: the worker pool
    assert imported.version.ref == "pets@1" and len(imported.version.items) == 64
    _assert_no_image_in(_blob_files(ws), [p.read_bytes() for p in src.rglob("*.png")])

    from autovision.search import run

    checkpoints: list[bytes] = []
    load_checkpoint = run.load_checkpoint

    def spy(folder: Path):  # the run's best checkpoint, read back for the package
        checkpoints.append((folder / "best.safetensors").read_bytes())
        return load_checkpoint(folder)

    monkeypatch.setattr(run, "load_checkpoint", spy)
    result = train(ws, "pets", trials=1)
    for name in ("model.onnx", "weights.safetensors"):
        assert (result.path / name).read_bytes().startswith(crypto.MAGIC)
    assert checkpoints and all(c.startswith(crypto.MAGIC) for c in checkpoints)
    assert parallel  # the image cache was decoded by worker processes
    assert not list(ws.cache_dir.rglob("*.npy"))  # no plaintext decoded copy left behind

    out = tmp_path / "preds.jsonl"
    args = ["predict", result.model, str(src / "cat"), "-o", str(out), "-w", str(ws_dir)]
    res = runner.invoke(_app(), ["--key-file", str(key_file), *args, "--json"])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 32


def test_migrate_encrypts_existing_model_packages(tmp_path, monkeypatch, make_image) -> None:
    import torch

    from autovision.models.package import ModelPackage, save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model
    from autovision.workspace.encryption import encrypt_workspace

    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=2, pretrained=False)
    spec = Preprocessing(input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    ws = Workspace(tmp_path / "ws")
    args = dict(labels=("a", "b"), task="single-label", backbone="compact_cnn")
    path = save_package(ws.models_dir / "m1", model, **args, preprocessing=spec)
    images = [make_image(i % 2, 20, i) for i in range(3)]
    before = ModelPackage.load(path).predict_proba(images)
    with pytest.raises(EncryptionError, match="no encryption key"):
        encrypt_workspace(ws)
    _new_key(monkeypatch)
    out = encrypt_workspace(Workspace(tmp_path / "ws"))
    assert out["model_files"] == 2 and out["blobs"] == 0
    assert all(
        crypto.is_encrypted((path / n).read_bytes()) for n in ("model.onnx", "weights.safetensors")
    )
    np.testing.assert_allclose(ModelPackage.load(path).predict_proba(images), before, atol=1e-6)
    assert encrypt_workspace(Workspace(tmp_path / "ws"))["model_files"] == 0  # idempotent
