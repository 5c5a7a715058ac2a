"""predict_batch: predictions, the errors file, resume, inputs from lists and URLs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from autovision.data import problems as P
from autovision.data.decode import load_rgb
from autovision.errors import ModelError
from autovision.models.package import ModelPackage
from autovision.predict import default_errors_path, predict_batch


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _sources(path: Path) -> list[str]:
    return [row["instance"]["content"] for row in _lines(path)]


def test_folder_with_broken_files(package_dir: Path, image_dir, tmp_path: Path) -> None:
    root = image_dir(n=9, broken=True)
    out = tmp_path / "out" / "preds.jsonl"
    result = predict_batch(package_dir, root, out, batch_size=4)

    assert (result.predicted, result.failed, result.skipped, result.total) == (9, 3, 0, 12)
    assert result.errors == default_errors_path(out) == tmp_path / "out" / "preds.errors.jsonl"
    errors = {Path(r["instance"]["content"]).name: r["error"] for r in _lines(result.errors)}
    assert {k: v["reason"] for k, v in errors.items()} == {
        "truncated.jpg": P.UNREADABLE,
        "text.png": P.UNSUPPORTED_FORMAT,
        "empty.jpg": P.EMPTY_FILE,
    }
    assert all(v["message"] for v in errors.values())
    assert result.failures == {P.UNREADABLE: 1, P.UNSUPPORTED_FORMAT: 1, P.EMPTY_FILE: 1}
    assert result.images_per_second > 0

    rows = _lines(out)
    assert len(rows) == 9
    package = ModelPackage.load(package_dir)
    sources = [r["instance"]["content"] for r in rows]
    images = [load_rgb(Path(s).read_bytes()) for s in sources]
    expected = package.predict_proba(images)
    for row, probs in zip(rows, expected, strict=True):
        pred = row["prediction"]
        assert pred["displayNames"] == [package.labels[int(i)] for i in pred["ids"]]
        assert sorted(pred["ids"]) == ["0", "1", "2"]  # single-label: every label
        assert pred["confidences"] == sorted(pred["confidences"], reverse=True)
        assert pred["ids"][0] == str(int(np.argmax(probs)))
        np.testing.assert_allclose(
            pred["confidences"], probs[[int(i) for i in pred["ids"]]], atol=1e-5
        )


def test_csv_with_missing_path_and_jsonl(package_dir: Path, image_dir, tmp_path: Path) -> None:
    root = image_dir(n=3)
    (root / "list.csv").write_text("path,label\nred/0000.png,x\nred/absent.png,y\n,z\n")
    (root / "list.jsonl").write_text('{"content": "green/0001.jpg"}\n{"content": "blue"}\n')
    out = tmp_path / "p.jsonl"
    errors = tmp_path / "e.jsonl"
    result = predict_batch(
        package_dir, [root / "list.csv", root / "list.jsonl"], out, errors=errors
    )
    assert [Path(s).name for s in _sources(out)] == ["0000.png", "0001.jpg"]
    reasons = {Path(r["instance"]["content"]).name: r["error"]["reason"] for r in _lines(errors)}
    assert reasons == {
        "absent.png": P.MISSING_FILE,
        "list.csv:4": P.BAD_ROW,
        "blue": P.UNREADABLE,  # a folder named in a list is not an image
    }
    assert (result.predicted, result.failed) == (2, 3)


def test_resume_after_interruption(package_dir: Path, image_dir, tmp_path: Path) -> None:
    root = image_dir(n=40, broken=True)
    out = tmp_path / "preds.jsonl"
    calls: list[tuple[int, int | None]] = []

    def stop_after_first_batch(done: int, total: int | None) -> None:
        calls.append((done, total))
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_batch(package_dir, root, out, batch_size=16, progress=stop_after_first_batch)
    assert calls == [(0, 43), (16, 43)]
    first = _sources(out) + _sources(default_errors_path(out))
    assert len(first) == 16
    # A kill in the middle of a write leaves half a line behind.
    with open(out, "a") as fh:
        fh.write('{"instance": {"content": "' + str(root / "red" / "0039"))

    progress: list[int] = []
    result = predict_batch(
        package_dir,
        root,
        out,
        resume=True,
        batch_size=16,
        progress=lambda d, t: progress.append(d),
    )
    assert result.skipped == 16 and result.predicted + result.failed == 27
    assert progress[-1] == 43
    done = _sources(out) + _sources(default_errors_path(out))
    assert not [s for s, n in Counter(done).items() if n > 1]
    assert len(done) == 43 and len(_sources(default_errors_path(out))) == 3

    # Everything done: a second resume writes nothing; no resume starts over.
    again = predict_batch(package_dir, root, out, resume=True)
    assert (again.skipped, again.predicted, again.failed) == (43, 0, 0)
    fresh = predict_batch(package_dir, root, out)
    assert fresh.skipped == 0 and len(_sources(out)) == 40


def test_multi_label_uses_model_thresholds(
    multilabel_package_dir: Path, image_dir, tmp_path: Path
) -> None:
    root = image_dir(n=4)
    out = tmp_path / "ml.jsonl"
    predict_batch(multilabel_package_dir, root, out)
    for row in _lines(out):
        pred = row["prediction"]
        assert "0" in pred["ids"] and "2" not in pred["ids"]  # thresholds 0.0 and 1.01
        scores = dict(zip(pred["ids"], pred["confidences"], strict=True))
        assert scores.get("1", 1.0) >= 0.5
    predict_batch(multilabel_package_dir, root, out, confidence_threshold=0.0, max_predictions=2)
    assert all(len(r["prediction"]["ids"]) == 2 for r in _lines(out))


def test_model_id_from_workspace_and_fsspec_sources(model_ws, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    buf = Path(tmp_path / "x.png")
    Image.new("RGB", (20, 10), (200, 10, 10)).save(buf)
    fs.pipe("/predict-pipeline/a.png", buf.read_bytes())
    try:
        out = tmp_path / "o.jsonl"
        result = predict_batch(
            "m-test",
            ["memory://predict-pipeline/a.png", "memory://predict-pipeline/missing.png"],
            out,
            workspace=model_ws,
            workers=1,
        )
    finally:
        fs.rm("/predict-pipeline", recursive=True)
    assert (result.predicted, result.failed) == (1, 1)
    assert _lines(result.errors)[0]["error"]["reason"] == P.MISSING_FILE
    with pytest.raises(ModelError):
        predict_batch("no-such-model", [], out, workspace=model_ws)
    with pytest.raises(ModelError):
        predict_batch(model_ws.model_path("m-test"), [], out, errors=out)
