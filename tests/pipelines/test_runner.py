"""A pipeline from import to promotion on generated data: first run executes every stage, the
second reuses all and says so, a changed CSV reruns from import, a failing gate stops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.pipelines import run_pipeline
from autovision.pipelines.store import card_of_model, get_run, list_runs
from autovision.versions import store as versions

from .conftest import FULL_STAGES

runner = CliRunner()
ORDER = ["import", "check", "train", "evaluate", "compare", "export", "promote"]
CARD = {"intended_use": "sorting leaf photos", "limitations": "two colours only"}


def _cli(ws, *args: str):
    return runner.invoke(app, ["pipeline", *args, "-w", str(ws.root)])


def _statuses(report) -> dict[str, str]:
    return {s.stage: s.status for s in report.stages}


@pytest.mark.slow
def test_first_run_all_then_nothing_then_changed_csv(workspace, csv_source, write_pipeline) -> None:
    csv_source()
    # YAML order is not run order: stages run in dependency order
    stages = dict(reversed(list(FULL_STAGES.items())))
    path = write_pipeline(stages, card=CARD)

    res = _cli(workspace, "run", str(path), "--json")
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)
    assert [s["stage"] for s in first["stages"]] == ORDER
    assert {s["stage"]: s["status"] for s in first["stages"]} == dict.fromkeys(ORDER, "done")
    out = {s["stage"]: s["outputs"] for s in first["stages"]}
    assert out["import"]["ref"] == "leaves@1" and out["import"]["images"] == 40
    assert out["train"]["ref"] == "leaves@1" and out["train"]["dataset"] == "leaves@1"
    assert out["evaluate"]["model"] == out["train"]["model"]
    assert out["compare"]["incumbent"] is None  # no production yet
    files = [Path(f) for f in out["export"]["files"]]
    assert any(f.suffix == ".onnx" for f in files) and all(f.is_file() for f in files)
    assert out["promote"]["moved"] is True
    assert versions.alias_target(workspace, "leaves", "production")[1] == 1
    check_gate = {s["stage"]: s["gate"] for s in first["stages"]}["check"]
    assert (
        check_gate["passed"]
        and "label 'green' 20 >= min_images_per_label 10" in (check_gate["message"])
    )

    # recorded: inputs, parameters, outputs and timing of every stage; the card block
    run = get_run(workspace, first["run_id"])
    card = {**CARD, "ethical_considerations": None}
    assert run["status"] == "done" and run["card"] == card
    assert card_of_model(workspace, out["train"]["model"]) == card
    assert card_of_model(workspace, "m-unknown") is None
    # ... and it is the intended-use section of the model's card, in the package too
    assert workspace.model(out["train"]["model"])["card"] == {
        "intended_use": ["sorting leaf photos"],
        "limitations": ["two colours only"],
    }
    md = (Path(workspace.model(out["train"]["model"])["path"]) / "model_card.md").read_text()
    assert "sorting leaf photos" in md and "two colours only" in md
    train = next(s for s in run["stages"] if s["stage"] == "train")
    assert train["inputs"]["dataset"] == "leaves@1" and train["params"]["trials"] == 1
    assert train["outputs"]["model"] == out["train"]["model"] and train["seconds"] > 0
    imp = run["stages"][0]
    assert imp["inputs"]["files"] == 41 and len(imp["inputs"]["content_hash"]) == 64

    # unchanged: nothing runs, and it says so
    res = _cli(workspace, "run", str(path))
    assert res.exit_code == 0, res.output
    assert "nothing changed: all 7 stages reused" in " ".join(res.output.split())
    second = list_runs(workspace)[0]
    assert second["stages"] == dict.fromkeys(ORDER, "reused")
    assert len(versions.list_versions(workspace, "leaves")) == 1
    assert workspace.versions("leaves") == [1]

    res = _cli(workspace, "run", str(path), "--dry-run", "--json")
    assert res.exit_code == 0
    planned = {s["stage"]: s["status"] for s in json.loads(res.stdout)["stages"]}
    assert planned == dict.fromkeys(ORDER, "would_reuse")

    # --force reruns one stage; its unchanged outputs leave the later ones reused
    report = run_pipeline(workspace, path, force=["evaluate"])
    assert _statuses(report) == {**dict.fromkeys(ORDER, "reused"), "evaluate": "done"}
    with pytest.raises(Exception, match="--force deploy: not a stage"):
        run_pipeline(workspace, path, force=["deploy"])

    # a changed CSV: everything from import runs again; compare meets the incumbent
    csv_source(extra=4)
    stages["compare"] = {"alias": "production", "min_gain": -1.0}
    path = write_pipeline(stages, card=CARD)
    report = run_pipeline(workspace, path)
    assert report.exit_code == 0, report.message
    assert _statuses(report) == dict.fromkeys(ORDER, "done")
    outs = {s.stage: s.outputs for s in report.stages}
    assert outs["import"]["ref"] == "leaves@2" and outs["import"]["images"] == 44
    assert outs["train"]["ref"] == "leaves@2"
    assert outs["compare"]["incumbent"] == "leaves@1"
    assert isinstance(outs["compare"]["gain"], float)
    assert versions.alias_target(workspace, "leaves", "production")[1] == 2

    res = _cli(workspace, "list", "--json")
    assert [r["status"] for r in json.loads(res.stdout)] == ["done"] * 4
    res = _cli(workspace, "show", report.run_id)
    assert res.exit_code == 0 and "leaves@2" in res.output


@pytest.mark.slow
def test_failing_gate_stops_with_reason_and_exit_code(
    workspace, csv_source, write_pipeline
) -> None:
    csv_source()
    stages = {**FULL_STAGES, "check": {"gate": {"min_images_per_label": 100}}}
    path = write_pipeline(stages)
    res = _cli(workspace, "run", str(path))
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "stopped at check: gate failed: label 'green' 20 < min_images_per_label 100" in text

    run = list_runs(workspace)[0]
    assert run["status"] == "gate_failed"
    assert run["stages"] == {
        "import": "done",
        "check": "gate_failed",
        **dict.fromkeys(ORDER[2:], "skipped"),
    }
    detail = get_run(workspace, run["id"])
    gate = detail["stages"][1]["gate"]
    assert gate["conditions"][0]["figure"] == 20 and gate["conditions"][0]["limit"] == 100
    assert "skipped: the check gate failed" in detail["stages"][2]["message"]
    assert not versions.names(workspace)  # nothing trained

    # the gate is judged again on the reused outputs: a lower bar passes without rerunning
    stages["check"] = {"gate": {"min_images_per_label": 20}}
    stages["train"] = {"trials": 1}
    del stages["export"], stages["compare"], stages["promote"], stages["evaluate"]
    report = run_pipeline(workspace, write_pipeline(stages))
    assert report.exit_code == 0
    assert _statuses(report) == {"import": "reused", "check": "reused", "train": "done"}


@pytest.mark.slow
def test_check_stage_runs_the_model_based_checks(
    workspace, csv_source, write_pipeline, monkeypatch
) -> None:
    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["linear"],
        "sizes": {"efficientnet_lite0": [32]},
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    csv_source()
    stages = {
        "import": {"source": "incoming/labels.csv"},
        "check": {
            "label_issues": True,
            "outliers": True,
            "folds": 2,
            "gate": {"max_label_issues": 40, "max_outliers": 40},
        },
    }
    report = run_pipeline(workspace, write_pipeline(stages))
    assert report.exit_code == 0, report.message
    check = report.stages[1]
    assert check.outputs["checked"] == {
        "label_issues": True,
        "outliers": True,
        "near_duplicates": False,
    }
    counts = check.outputs["counts"]
    assert isinstance(counts["label_issues"], int) and isinstance(counts["outliers"], int)
    conditions = check.gate["conditions"]
    assert [c["condition"] for c in conditions] == ["max_label_issues", "max_outliers"]
    assert [c["figure"] for c in conditions] == [counts["label_issues"], counts["outliers"]]
