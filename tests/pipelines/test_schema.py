"""Pipeline files: validated before anything runs, problems named by line and key."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.pipelines.schema import SpecError, json_schema, load_pipeline, parse_pipeline

runner = CliRunner()

GOOD = """\
name: leaf-disease
dataset: leaves
card:
  intended_use: triage of leaf photos
  limitations: trained on one greenhouse
stages:
  import:   {source: ./incoming/labels.csv}
  check:    {label_issues: true, gate: {max_conflicting_labels: 0, min_images_per_label: 20}}
  train:    {budget: 20m, exclude_issues: [label_issues, exact_duplicates]}
  evaluate: {report: true, gate: {min_accuracy: 0.85, min_recall_per_label: 0.6}}
  compare:  {alias: production, min_gain: 0.0}
  export:   {formats: [onnx, onnx-int8]}
  promote:  {alias: production}
"""


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(SpecError) as info:
        parse_pipeline(text, "p.yaml")
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_the_issue_example_is_valid() -> None:
    spec = parse_pipeline(GOOD)
    assert spec.stages.present() == [
        "import",
        "check",
        "train",
        "evaluate",
        "compare",
        "export",
        "promote",
    ]
    assert spec.stages.train.budget == "20m"
    assert spec.card.intended_use == "triage of leaf photos"
    assert spec.model_name == "leaves"


def test_unknown_key_named_with_its_line() -> None:
    text = GOOD.replace("max_conflicting_labels: 0", "max_conflicting_lables: 0")
    assert _problems(text) == [(8, "stages.check.gate.max_conflicting_lables", "unknown key")]


def test_unknown_stage_and_top_level_key() -> None:
    text = GOOD.replace("  promote:", "  deploy:   {to: prod}\n  promote:") + "owner: me\n"
    found = _problems(text)
    assert (13, "stages.deploy", "unknown key") in found
    assert (15, "owner", "unknown key") in found


def test_wrong_types_named_with_line_and_value() -> None:
    text = GOOD.replace("min_accuracy: 0.85", "min_accuracy: high").replace(
        "budget: 20m", "budget: soon"
    )
    found = {key: (line, msg) for line, key, msg in _problems(text)}
    assert found["stages.evaluate.gate.min_accuracy"][0] == 10
    assert "'high'" in found["stages.evaluate.gate.min_accuracy"][1]
    assert found["stages.train.budget"][0] == 9
    assert "invalid budget" in found["stages.train.budget"][1]


def test_missing_stages() -> None:
    assert _problems("name: x\ndataset: d\n") == [(1, "stages", "missing")]
    assert _problems("name: x\ndataset: d\nstages: {}\n") == [(3, "stages", "no stage given")]
    found = _problems("name: x\ndataset: d\nstages:\n  import: {source: a}\n  evaluate: {}\n")
    assert found == [(5, "stages.evaluate", "needs a 'train' stage (missing)")]
    assert _problems("name: x\ndataset: d\nstages:\n  import: {}\n") == [
        (4, "stages.import.source", "missing")
    ]


def test_card_block_is_validated() -> None:
    found = _problems(GOOD.replace("  limitations:", "  audience: farmers\n  limitations:"))
    assert found == [(5, "card.audience", "unknown key")]


def test_not_yaml_names_the_line() -> None:
    found = _problems("name: x\ndataset: d\nstages:\n  import: {source: [a\n")
    assert found[0][0] == 5 and found[0][1] == "(yaml)"


def test_cli_reports_line_and_key_and_fails(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("min_gain: 0.0", "min_gain: 0.0, alais: prod"))
    res = runner.invoke(app, ["pipeline", "run", str(path), "-w", str(tmp_path / "ws")])
    assert res.exit_code == 1
    assert "line 11, stages.compare.alais: unknown key" in " ".join(res.output.split())
    res = runner.invoke(app, ["pipeline", "run", str(path), "--json", "-w", str(tmp_path / "ws")])
    assert res.exit_code == 1
    body = json.loads(res.stdout)
    problem = {"line": 11, "key": "stages.compare.alais", "message": "unknown key"}
    assert body["problems"] == [problem]


def test_paths_are_relative_to_the_file(tmp_path) -> None:
    path = tmp_path / "sub" / "p.yaml"
    path.parent.mkdir()
    path.write_text(GOOD)
    loaded = load_pipeline(path)
    assert loaded.resolve("./incoming/labels.csv") == str(path.parent / "incoming/labels.csv")
    assert loaded.resolve("s3://bucket/x.csv") == "s3://bucket/x.csv"


def test_json_schema_for_editors() -> None:
    schema = json_schema()
    stages = schema["$defs"]["Stages"]["properties"]
    assert set(stages) == {"import", "check", "train", "evaluate", "compare", "export", "promote"}
    assert schema["$defs"]["Stages"]["additionalProperties"] is False
    res = runner.invoke(app, ["pipeline", "schema"])
    assert res.exit_code == 0 and json.loads(res.stdout) == schema
