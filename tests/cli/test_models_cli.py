"""``autovision models`` end to end on generated images: two versions of one name, aliases,
history, rollback (twice, then refused), and names/aliases accepted by evaluate, predict,
export and serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.data.dataset import Item
from autovision.security.audit import read_audit

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

runner = CliRunner()
LABELS = ("red", "green", "blue")


def run(ws, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(ws.root)])


def ok(ws, *args: str):
    res = run(ws, *args)
    assert res.exit_code == 0, res.output
    return res


def js(ws, *args: str):
    return json.loads(ok(ws, *args, "--json").stdout)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny compact-CNN packages (random weights, different seeds)."""
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model

    root = tmp_path_factory.mktemp("versions")
    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
        spec = Preprocessing(input_size=16, mean=(127.5,) * 3, std=(127.5,) * 3)
        out.append(
            save_package(
                root / f"pkg-{seed}",
                model,
                labels=LABELS,
                task="single-label",
                backbone="compact_cnn",
                preprocessing=spec,
            )
        )
    return out


@pytest.fixture
def two_versions(workspace, image_bytes, packages, tmp_path):
    """Dataset ``shapes@1`` and named model ``shapes`` with versions 1 and 2."""
    import shutil

    items, k = [], 1
    for li, label in enumerate(LABELS):
        for split, n in (("train", 3), ("test", 2)):
            for _ in range(n):
                sha = workspace.blobs.put(image_bytes(li, 16, k))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    workspace.create_version("shapes", items, multi_label=False)
    ids = []
    for i, pkg in enumerate(packages, start=1):
        model_id = f"m-shapes-{i}"
        path = shutil.copytree(pkg, workspace.models_dir / model_id)
        mv = workspace.register_model(
            model_id,
            dataset="shapes",
            dataset_version=1,
            task="single-label",
            path=path,
            name="shapes",
        )
        assert mv.version == i
        ids.append(model_id)
    return workspace, ids


def test_list_show_alias_history_rollback(two_versions) -> None:
    ws, (v1, v2) = two_versions
    listed = js(ws, "models", "list")
    assert [(m["id"], m["name"], m["version"], m["aliases"]) for m in listed] == [
        (v1, "shapes", 1, ["default"]),
        (v2, "shapes", 2, []),
    ]
    table = ok(ws, "models", "list", "shapes").stdout
    assert "shapes@1" in table and "shapes@2" in table and "default" in table

    moved = js(ws, "models", "alias", "set", "shapes@1", "production", "--reason", "first")
    assert (moved["from_version"], moved["to_version"]) == (None, 1)
    ok(ws, "models", "alias", "set", "shapes@2", "production", "--reason", "better")
    shown = js(ws, "models", "show", "shapes@production")
    assert (shown["id"], shown["version"], shown["aliases"]) == (v2, 2, ["production"])
    assert "shapes@2" in ok(ws, "models", "show", "shapes@production").stdout
    ok(ws, "models", "alias", "set", "shapes@1", "production", "--reason", "2 misbehaves")

    back = js(ws, "models", "rollback", "shapes", "production")
    assert (back["kind"], back["from_version"], back["to_version"]) == ("rollback", 1, 2)
    res = ok(ws, "models", "rollback", "shapes", "production")
    assert "version 2 -> version 1" in res.stdout
    refused = run(ws, "models", "rollback", "shapes", "production")
    assert refused.exit_code == 1 and "nothing to roll back" in refused.output
    assert js(ws, "models", "show", "shapes@production")["version"] == 1

    hist = js(ws, "models", "history", "shapes", "production")
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in hist] == [
        ("set", None, 1),
        ("set", 1, 2),
        ("set", 2, 1),
        ("rollback", 1, 2),
        ("rollback", 2, 1),
    ]
    assert [e["reason"] for e in hist[:3]] == ["first", "better", "2 misbehaves"]
    assert all(e["actor"] for e in hist)
    everything = js(ws, "models", "history", "shapes")
    assert everything[0]["alias"] == "default" and len(everything) == 6
    assert "rollback" in ok(ws, "models", "history", "shapes").stdout

    ok(ws, "models", "alias", "set", "shapes@2", "staging")
    ok(ws, "models", "alias", "delete", "shapes", "staging", "--reason", "done")
    assert "staging" not in js(ws, "models", "show", "shapes@2")["aliases"]
    res = run(ws, "models", "alias", "delete", "shapes", "default")
    assert res.exit_code == 1 and "cannot be deleted" in res.output
    res = run(ws, "models", "show", "shapes@7")
    assert res.exit_code == 1 and "no version 7 (versions: 1, 2)" in res.output
    res = run(ws, "models", "list", "cars")
    assert res.exit_code == 1 and "no model named 'cars'" in res.output

    actions = [r["action"] for r in read_audit(ws.audit_log_path) if r.get("event") == "alias"]
    assert actions.count("alias.set") == 4 and actions.count("alias.rollback") == 2
    assert actions.count("alias.delete") == 1


def test_refs_accepted_by_evaluate_predict_export(two_versions, tmp_path, image_bytes) -> None:
    ws, (v1, v2) = two_versions
    ok(ws, "models", "alias", "set", "shapes@2", "production")

    result = js(ws, "evaluate", "shapes@production")
    assert result["model"] == v2
    assert ws.model(v2)["test_metrics"]["accuracy"] == result["accuracy"]
    assert js(ws, "models", "show", "shapes@2")["test_metrics"]["images"] == 6
    assert f"{result['accuracy']:.4f}" in ok(ws, "models", "list").stdout
    ok(ws, "models", "alias", "set", "shapes@1", "production")
    hist = js(ws, "models", "history", "shapes", "production")
    assert hist[-1]["from_metrics"]["accuracy"] == result["accuracy"]
    assert hist[-1]["to_metrics"] is None  # version 1 not evaluated

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(image_bytes(0, 16, 99))
    out = js(ws, "predict", "shapes@2", str(images), "-o", str(tmp_path / "p.jsonl"))
    assert out["model"] == v2 and out["predicted"] == 1
    split = js(ws, "predict", "shapes", "--split", "test", "-o", str(tmp_path / "t.csv"))
    assert split["model"] == v1  # a bare name: its default alias

    exported = js(ws, "export", "shapes@production", "-o", str(tmp_path / "onnx"))
    assert (tmp_path / "onnx" / "model.onnx").is_file(), exported
    text = ok(ws, "export", "shapes", "-o", str(tmp_path / "onnx2")).stdout
    assert v1 in text

    res = run(ws, "evaluate", "shapes@staging")
    assert res.exit_code == 1 and "no alias 'staging'" in res.output


def test_serve_accepts_names_and_aliases(two_versions, monkeypatch) -> None:
    import autovision.serving.app as server_app

    ws, _ = two_versions
    started: list = []
    monkeypatch.setattr(server_app, "serve", lambda settings, ws=None: started.append(settings))
    ok(ws, "models", "alias", "set", "shapes@2", "production")
    for ref in ("shapes@production", "shapes", "shapes@1"):
        ok(ws, "serve", ref)
    assert [s.model_ids for s in started] == [["shapes@production"], ["shapes"], ["shapes@1"]]
    res = run(ws, "serve", "shapes@canary")
    assert res.exit_code == 1 and "no alias 'canary'" in res.output


def test_train_name_registers_the_next_version(workspace, image_bytes, monkeypatch) -> None:
    space = {"backbones": ["compact_cnn"], "sizes": {"compact_cnn": [16]}, "epochs": [1, 1]}
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    items, k = [], 1
    for li, label in enumerate(("a", "b")):
        for split, n in (("train", 6), ("validation", 2), ("test", 2)):
            for _ in range(n):
                sha = workspace.blobs.put(image_bytes(li, 16, k))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    workspace.create_version("tiny", items, multi_label=False)
    out = js(workspace, "train", "tiny", "--trials", "1", "--name", "pets")
    assert (out["name"], out["version"]) == ("pets", 1)
    assert workspace.model("pets")["model"] == out["model"]
    assert workspace.model("pets@1")["aliases"] == ["default"]
    res = run(workspace, "train", "tiny", "--trials", "1", "--name", "bad name")
    assert res.exit_code == 1 and "invalid model name" in res.output
