"""Model cards from records: the sections, card info stored and validated, escaping of user
text in HTML and Markdown, the CLI, the card written into the package by evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cards import (
    CardError,
    build_card,
    read_card_file,
    render_card,
    set_card_info,
)
from autovision.cli.main import app
from autovision.evaluation import evaluate
from tests.evaluation.test_slices import _slice_workspace

XSS = "<script>alert('x')</script>"
runner = CliRunner()


@pytest.fixture
def cams(known):
    ws = _slice_workspace(known, {"new": 2, "old": 14})
    evaluate(ws, "m-cams", slice_by="camera")
    return ws


def test_card_sections_from_the_records(cams):
    card = build_card(cams, "cams@1")
    assert card["model"]["ref"] == "cams@1" and card["model"]["id"] == "m-cams"
    metrics = json.loads((Path(card["model"]["path"]) / "metrics.json").read_text())
    assert card["evaluation"]["overall"]["accuracy"] == metrics["accuracy"]
    assert card["evaluation"]["images"] == metrics["images"] == 123
    assert card["data"]["content_hash"] == cams.dataset("cams@1").content_hash
    assert card["data"]["label_split_counts"]["cat"] == {"train": 1, "validation": 0, "test": 63}
    assert card["fairness"]["camera"]["gaps"] == metrics["slices"]["camera"]["gaps"]
    assert "accuracy" in card["fairness"]["camera"]["flagged"]
    assert card["training"] is None  # registered by hand, not trained here
    assert card["monitoring"] == [] and card["intended_use"] is None
    md = render_card(card, "md")
    for title in ("Model details", "Intended use", "Factors", "Metrics", "Evaluation data",
                  "Training data", "Training procedure", "Quantitative analyses",
                  "Ethical considerations", "Caveats and recommendations", "Monitoring",
                  "Lineage"):  # fmt: skip
        assert f"## {title}" in md
    assert "| accuracy | 0.2000 | new (0.967) vs old (0.767) | FLAGGED |" in md


def test_evaluate_writes_the_card_into_the_package(cams):
    folder = Path(cams.model("cams@1")["path"])
    record = json.loads((folder / "model_card.json").read_text())
    assert record["evaluation"]["overall"]["accuracy"] == pytest.approx(104 / 123)
    assert "## Quantitative analyses" in (folder / "model_card.md").read_text()
    assert "FLAGGED" in (folder / "model_card.html").read_text()


def test_card_info_is_stored_and_escaped(cams):
    info = {
        "intended_use": f"Sorting pets {XSS}",
        "limitations": ["Night images | untested", "**bold** _x_ [link](javascript:x)"],
        "ethical_considerations": "<img src=x onerror=alert(1)>",
    }
    set_card_info(cams, "cams@1", info)
    assert cams.model("cams@1")["card"]["limitations"][0] == "Night images | untested"
    card = build_card(cams, "cams@1")
    html = render_card(card, "html")
    assert XSS not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    md = render_card(card, "md")
    assert "<script>" not in md and "<img" not in md
    assert "- Night images \\| untested" in md  # a pipe cannot break a table
    assert "\\[link\\](javascript:x)" in md
    # the package's card was rewritten with it
    folder = Path(card["model"]["path"])
    assert "Sorting pets &lt;script&gt;" in (folder / "model_card.html").read_text()


def test_card_info_is_validated(cams, tmp_path):
    with pytest.raises(CardError, match="unknown key 'intended_uses'"):
        set_card_info(cams, "cams@1", {"intended_uses": "x"})
    with pytest.raises(CardError, match="'limitations' must be a string or a list"):
        set_card_info(cams, "cams@1", {"limitations": [1, 2]})
    bad = tmp_path / "card.yaml"
    bad.write_text("intended_use: [unclosed\n")
    with pytest.raises(CardError, match="card.yaml: not valid yaml"):
        read_card_file(bad)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("name: x\ncard:\n  intended_use: sorting\n  limitations: [a, b]\n")
    assert read_card_file(pipeline) == {"intended_use": ["sorting"], "limitations": ["a", "b"]}


def test_cli_card_formats_output_and_card_file(cams, tmp_path):
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({"intended_use": XSS, "limitations": "small test split"}))
    out = tmp_path / "card.html"
    ws = ["-w", str(cams.root)]
    res = runner.invoke(app, ["models", "card", "cams@1", "--format", "html", "--output",
                              str(out), "--card-file", str(card_file), *ws])  # fmt: skip
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "small test split" in html
    assert XSS not in html and "&lt;script&gt;" in html
    res = runner.invoke(app, ["models", "card", "cams", *ws])
    assert res.exit_code == 0 and res.stdout.startswith("# Model card: cams@1")
    assert "- small test split" in res.stdout  # the card file was stored
    res = runner.invoke(app, ["models", "card", "cams@1", "--json", *ws])
    assert json.loads(res.stdout)["evaluation"]["overall"]["accuracy"] == pytest.approx(104 / 123)
    res = runner.invoke(app, ["models", "card", "cams@1", "--format", "pdf", *ws])
    assert res.exit_code == 1 and "unknown card format 'pdf'" in res.stderr
    res = runner.invoke(app, ["models", "card", "cams@9", *ws])
    assert res.exit_code == 1 and "cams" in res.stderr


def test_card_of_a_model_never_evaluated(known):
    card = build_card(known, "m-known")
    assert card["evaluation"] is None and card["fairness"] is None
    md = render_card(card, "md")
    assert "_Not evaluated yet (autovision evaluate known@1)._" in md
    assert "not computed: evaluate with --slice-by ATTRIBUTE" in render_card(card, "html")
