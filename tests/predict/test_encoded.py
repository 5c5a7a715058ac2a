"""``predict_encoded``: uploaded bytes get the answers of ``predict_batch`` and of the
server's decode path, one result per image, failures named by file, budgets before decode."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from autovision.data import problems as P
from autovision.models.package import ModelPackage
from autovision.predict.encoded import DRAFT_FACTOR, predict_encoded
from autovision.predict.pipeline import predict_batch


@pytest.fixture(scope="module")
def package(package_dir) -> ModelPackage:
    return ModelPackage.load(package_dir)


def test_same_answers_as_predict_batch(package, image_bytes, tmp_path) -> None:
    images = [(f"img{i}.png", image_bytes(i % 3, 40 + i, seed=i)) for i in range(4)]
    for name, data in images:
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "preds.jsonl"
    predict_batch(package, [str(tmp_path / n) for n, _ in images], out)
    expected = [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
    got = predict_encoded(package, images)
    assert [r.name for r in got] == [n for n, _ in images]
    assert [r.prediction for r in got] == expected
    for r in got:
        assert r.ok and r.width == r.height and list(r.probabilities) == package.labels
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_same_answers_as_the_server_for_a_jpeg(package, image_bytes) -> None:
    from autovision.serving import inference

    assert DRAFT_FACTOR == inference.DRAFT_FACTOR
    data = image_bytes(1, 300, seed=3, fmt="JPEG")  # large enough for a reduced DCT scale
    x = inference.prepare_encoded([data], package.preprocessing, 40_000_000)
    served = package.predict_array(x)[0]
    (got,) = predict_encoded(package, [("big.jpg", data)])
    assert list(got.probabilities.values()) == pytest.approx(served.tolist(), abs=1e-6)


def test_bad_images_fail_alone_naming_their_file(package, image_bytes) -> None:
    good = image_bytes(0, 40)
    results = predict_encoded(
        package,
        [
            ("ok.png", good),
            ("notes.png", b"hello, not an image"),
            ("cut.png", good[: len(good) // 2]),
            ("empty.jpg", b""),
            ("ok2.png", good),
        ],
    )
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert [r.reason for r in results[1:4]] == [P.UNSUPPORTED_FORMAT, P.UNREADABLE, P.EMPTY_FILE]
    assert results[1].message.startswith("notes.png: not an image")
    assert results[2].message.startswith("cut.png: ")
    assert results[0].prediction == results[4].prediction


def test_budgets_are_checked_before_decoding(package, image_bytes) -> None:
    bomb = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(bomb, format="PNG")  # 48 MB decoded, tiny file
    small = image_bytes(0, 40)
    results = predict_encoded(
        package,
        [("a.png", small), ("bomb.png", bomb.getvalue()), ("b.png", small), ("c.png", small)],
        max_pixels=10_000_000,
        max_total_bytes=2 * 40 * 40 * 3,
    )
    assert [r.reason for r in results] == [
        None,
        P.TOO_MANY_PIXELS,
        None,
        P.DECODE_BUDGET_EXCEEDED,
    ]
    assert "bomb.png: 4000x4000" in results[1].message
    assert "c.png: decodes to 4800 bytes" in results[3].message
    per_image = predict_encoded(package, [("a.png", small)], max_image_bytes=100)
    assert per_image[0].reason == P.DECODE_BUDGET_EXCEEDED


def test_preview_and_multi_label_thresholds(multilabel_package_dir, image_bytes) -> None:
    pkg = ModelPackage.load(multilabel_package_dir)
    (r,) = predict_encoded(pkg, [("x.png", image_bytes(2, 300))], preview=64)
    assert "red" in r.prediction["displayNames"] and "blue" not in r.prediction["displayNames"]
    assert set(r.probabilities) == {"red", "green", "blue"}
    thumb = Image.open(io.BytesIO(r.preview))
    assert thumb.format == "JPEG" and max(thumb.size) == 64
    assert r.to_dict()["ok"] and "preview" not in r.to_dict()
    assert np.isfinite(list(r.probabilities.values())).all()
