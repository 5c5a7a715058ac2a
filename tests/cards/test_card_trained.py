"""The card of a model trained and evaluated here holds the figures of its metrics JSON,
field by field, in the record, the Markdown and the HTML written into the package."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.data.dataset import Item

pytestmark = pytest.mark.slow
SPACE = {"backbones": ["compact_cnn"], "sizes": {"compact_cnn": [16]}, "epochs": [2, 2],
         "batch_size": 16}  # fmt: skip


def _dataset(ws, make_image) -> None:
    items, k = [], 0
    for li, lab in enumerate(("cat", "dog")):
        for split, n in (("train", 12), ("validation", 4), ("test", 12)):
            for i in range(n):
                buf = io.BytesIO()
                make_image(li, 16, k).save(buf, format="PNG")
                img = Image.open(io.BytesIO(buf.getvalue()))
                items.append(
                    Item(
                        id=k + 1,
                        sha256=ws.blobs.put(buf.getvalue()),
                        source=f"{lab}/{k}.png",
                        labels=(lab,),
                        split=split,
                        width=img.width,
                        height=img.height,
                        format="PNG",
                        metadata={"camera": "ab"[i % 2]},
                    )  # fmt: skip
                )
                k += 1
    ws.create_version("pets", items, multi_label=False, source="generated in the test")


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def test_card_of_a_trained_model_holds_its_metrics(workspace, make_image, monkeypatch):
    from autovision.evaluation import evaluate
    from autovision.search import train

    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    _dataset(workspace, make_image)
    result = train(workspace, "pets", trials=1, seed=7)
    folder = Path(result.path)
    trained = json.loads((folder / "model_card.json").read_text())  # written by train
    assert trained["evaluation"] is None and trained["training"]["stop_reason"] == "TRIALS_DONE"

    metrics = evaluate(workspace, "pets@1", slice_by="camera", min_slice_support=5)
    assert json.loads((folder / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    card = json.loads((folder / "model_card.json").read_text())  # rewritten by evaluate
    meta = json.loads((folder / "model.json").read_text())
    ev = card["evaluation"]
    assert (ev["dataset"], ev["split"], ev["images"]) == ("pets@1", "test", 24)
    assert ev["evaluated_at"] == metrics["evaluated_at"]
    for key in ("accuracy", "top_k_accuracy", "log_loss"):
        assert ev["overall"][key] == metrics[key]
    for avg in ("macro", "micro", "weighted"):
        for k in ("precision", "recall", "f1"):
            assert ev["overall"][f"{avg}_{k}"] == metrics[avg][k]
    assert ev["overall"]["roc_auc_macro"] == metrics["roc_auc"]["macro"]
    assert ev["overall"]["average_precision_macro"] == metrics["average_precision"]["macro"]
    assert set(ev["per_label"]) == {"cat", "dog"}
    for lab, row in ev["per_label"].items():
        for k, v in row.items():
            assert v == metrics["per_label"][lab][k], (lab, k)
    for k in ("ece", "mce", "kind", "n_bins"):
        assert ev["calibration"][k] == metrics["calibration"][k]
    fair = card["fairness"]["camera"]
    assert fair["gaps"] == metrics["slices"]["camera"]["gaps"]
    assert fair["flagged"] == metrics["slices"]["camera"]["flagged"]
    assert [v["accuracy"] for v in fair["values"]] == [
        v["accuracy"] for v in metrics["slices"]["camera"]["values"]
    ]
    # data, training and lineage come from the package and the workspace
    assert card["data"]["content_hash"] == meta["dataset"]["content_hash"]
    assert card["data"]["content_hash"] == workspace.dataset("pets@1").content_hash
    assert card["data"]["splits"] == {"train": 24, "validation": 8, "test": 24}
    assert card["data"]["sources"][0]["source"] == "generated in the test"
    assert card["training"]["chosen"] == meta["hyperparameters"]
    assert card["training"]["search_space"] == meta["search"]["space"]
    assert card["training"]["budget"] == meta["search"]["budget"]
    assert card["training"]["compute"]["device"] == meta["search"]["device"]
    assert card["training"]["compute"]["trials"] == 1
    assert card["training"]["validation"] == meta["validation"]
    assert card["lineage"]["seed"] == 7 and card["lineage"]["run_id"] == meta["search"]["run_id"]
    assert card["lineage"]["code_version"] == f"autovision {meta['library_versions']['autovision']}"
    assert card["model"]["backbone"] == "compact_cnn" and card["model"]["labels"] == ["cat", "dog"]

    # the same figures in the rendered cards
    md = (folder / "model_card.md").read_text()
    html = (folder / "model_card.html").read_text()
    assert f"| accuracy | {_fmt(metrics['accuracy'])} |" in md
    assert f"| macro\\_f1 | {_fmt(metrics['macro']['f1'])} |" in md
    for lab in ("cat", "dog"):
        m = metrics["per_label"][lab]
        row = " | ".join(_fmt(m[k]) for k in ("precision", "recall", "f1", "roc_auc",
                                               "average_precision"))  # fmt: skip
        assert f"| {lab} | {m['support']} | {row} |" in md
        assert f'<tr data-label="{lab}"><td>{lab}</td><td>{m["support"]}</td>' in html
    assert f'data-metric="accuracy">{_fmt(metrics["accuracy"])}</td>' in html
    assert f"Expected calibration error {_fmt(metrics['calibration']['ece'])}" in md
    assert meta["dataset"]["content_hash"] in md and meta["dataset"]["content_hash"] in html
    # and the CLI prints the same card
    res = CliRunner().invoke(app, ["models", "card", "pets@1", "-w", str(workspace.root)])
    assert res.exit_code == 0, res.output
    assert f"| accuracy | {_fmt(metrics['accuracy'])} |" in res.stdout
