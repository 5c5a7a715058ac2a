"""``autovision train`` and ``autovision models`` through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.data.dataset import Item

runner = CliRunner()
SPACE = {"backbones": ["compact_cnn"], "sizes": {"compact_cnn": [16]}, "epochs": [2, 2]}


def _dataset(ws, image_bytes, labels: tuple[str, ...], counts=(8, 3, 2)) -> None:
    items, k = [], 1
    for li, label in enumerate(labels):
        for split, n in zip(("train", "validation", "test"), counts, strict=True):
            for _ in range(n):
                sha = ws.blobs.put(image_bytes(li, 16, k))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    ws.create_version("tiny", items, multi_label=False)


@pytest.fixture(autouse=True)
def _small_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")


@pytest.fixture
def tiny_ws(workspace, image_bytes):
    _dataset(workspace, image_bytes, ("a", "b"))
    return workspace


def run(ws, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(ws.root)])


def test_train_json_then_models(tiny_ws) -> None:
    res = run(tiny_ws, "train", "tiny@1", "--trials", "1", "--seed", "1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {
        "model",
        "name",
        "version",
        "dataset",
        "dataset_version",
        "task",
        "validation",
        "best",
        "trials",
        "stop_reason",
        "seconds",
        "excluded",
        "ensemble",
        "ranking",
    }
    assert out["stop_reason"] == "TRIALS_DONE" and out["trials"] == 1
    assert (out["name"], out["version"]) == ("tiny", 1)  # the dataset's name by default

    listed = json.loads(run(tiny_ws, "models", "list", "--json").stdout)
    assert [m["model"] for m in listed] == [out["model"]]
    shown = json.loads(run(tiny_ws, "models", "show", out["model"], "--json").stdout)
    assert shown["path"].endswith(out["model"]) and shown["validation"] == out["validation"]
    assert shown["best"] == out["best"] and shown["stop_reason"] == "TRIALS_DONE"

    text = run(tiny_ws, "models", "show", out["model"])
    assert text.exit_code == 0 and out["model"] in text.stdout
    table = run(tiny_ws, "models", "list")
    assert table.exit_code == 0 and "tiny@1" in table.stdout


def test_train_readable_progress(tiny_ws) -> None:
    res = run(tiny_ws, "train", "tiny", "--trials", "2")
    assert res.exit_code == 0, res.output
    assert "trial   0" in res.stdout and "trial   1" in res.stdout
    assert "stop reason" in res.stdout and "TRIALS_DONE" in res.stdout
    assert "ensemble" in res.stdout and "flips" in res.stdout


def test_train_ensemble_flags(tiny_ws) -> None:
    args = ("train", "tiny", "--trials", "2", "--json", "--ensemble", "off", "--tta", "off")
    res = run(tiny_ws, *args, "--max-inference-cost", "1.5")
    assert res.exit_code == 0, res.output
    ens = json.loads(res.stdout)["ensemble"]
    assert not ens["kept"] and "--ensemble off" in ens["why"]
    assert not ens["tta"]["enabled"] and ens["inference_cost"]["max"] == 1.5
    res = run(tiny_ws, "train", "tiny", "--trials", "1", "--ensemble", "always")
    assert res.exit_code != 0 and "always" in res.output


def test_train_cv_flags(tiny_ws) -> None:
    res = run(tiny_ws, "train", "tiny", "--trials", "1", "--json", "--cv", "on", "--cv-folds", "3")
    assert res.exit_code == 0, res.output
    ranking = json.loads(res.stdout)["ranking"]
    assert ranking["measure"] == "cv" and ranking["folds"] == 3 and ranking["cv"] == "on"
    # image trials (the compact CNN) are still scored on validation
    assert [r["measure"] for r in ranking["trials"]] == ["validation"]
    res = run(tiny_ws, "train", "tiny", "--trials", "1", "--cv-folds", "1")
    assert res.exit_code == 1 and "--cv-folds" in res.output


def test_train_errors_are_one_line(workspace, image_bytes) -> None:
    _dataset(workspace, image_bytes, ("only",))
    res = run(workspace, "train", "tiny", "--trials", "1")
    assert res.exit_code == 1 and "at least 2 labels" in res.output
    res = run(workspace, "train", "tiny", "--budget", "soon")
    assert res.exit_code == 1 and "invalid budget" in res.output
    res = run(workspace, "train", "tiny", "--resume")
    assert res.exit_code == 1 and "no unfinished training run" in res.output
    res = run(workspace, "models", "show", "nope")
    assert res.exit_code == 1 and "no model" in res.output
