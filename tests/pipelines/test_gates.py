"""Gates judged on a stage's outputs: each names its condition and figure."""

from __future__ import annotations

from autovision.pipelines.gates import check_gate, compare_gate, evaluate_gate


def test_check_gate_names_condition_and_figure() -> None:
    outputs = {"counts": {"conflicting_labels": 2, "split_leakage": 0}, "labels": {"a": 30, "b": 7}}
    gate = {"max_conflicting_labels": 0, "max_split_leakage": 0, "min_images_per_label": 20}
    g = check_gate({"gate": gate}, outputs)
    assert not g.passed
    assert [c.condition for c in g.failed] == ["max_conflicting_labels", "min_images_per_label"]
    msg = g.message()
    assert "conflicting_labels 2 > max_conflicting_labels 0" in msg
    assert "label 'b' 7 < min_images_per_label 20" in msg


def test_check_gate_skips_a_check_that_did_not_run() -> None:
    g = check_gate({"gate": {"max_label_issues": 0}}, {"counts": {}, "labels": {"a": 3}})
    assert g.passed
    assert "skipped" in g.message() and "label_issues: true" in g.message()


def test_evaluate_gate_accuracy_and_recall() -> None:
    outputs = {"accuracy": 0.8, "recall": {"a": 0.9, "b": 0.55, "c": None}}
    g = evaluate_gate({"gate": {"min_accuracy": 0.85, "min_recall_per_label": 0.6}}, outputs)
    assert [c.condition for c in g.failed] == ["min_accuracy", "min_recall_per_label"]
    assert "accuracy 0.8 < min_accuracy 0.85" in g.message()
    assert "recall of label 'b' 0.55 < min_recall_per_label 0.6" in g.message()
    assert evaluate_gate({"gate": {"min_accuracy": 0.8}}, outputs).passed


def test_max_slice_gap_reads_the_gaps_of_every_attribute() -> None:
    slices = {
        "camera": {"gaps": {"accuracy": {"gap": 0.02, "flagged": False}}},
        "skin_tone": {
            "gaps": {
                "accuracy": {"gap": 0.12, "flagged": True},
                "recall": {"gap": 0.04, "flagged": False},
            }
        },
    }
    g = evaluate_gate({"gate": {"max_slice_gap": 0.05}}, {"slices": slices})
    assert not g.passed
    assert g.failed[0].figure == 0.12
    assert "accuracy gap between values of 'skin_tone' 0.12 > max_slice_gap 0.05" in g.message()
    assert evaluate_gate({"gate": {"max_slice_gap": 0.2}}, {"slices": slices}).passed


def test_max_slice_gap_without_gaps_is_skipped_with_a_message() -> None:
    old = {"slices": {"key": "camera", "slices": [], "flagged": []}}  # the older format
    for outputs in ({}, old):
        g = evaluate_gate({"gate": {"max_slice_gap": 0.05}}, outputs)
        assert g.passed and g.conditions[0].passed is None
        assert "no slice gaps" in g.message() and g.message().startswith("gate skipped")


def test_compare_gate() -> None:
    out = {"incumbent": "m@1", "metric": "accuracy", "gain": -0.05}
    g = compare_gate({"min_gain": 0.0}, out)
    assert not g.passed and "accuracy gain over m@1 -0.05 < min_gain 0" in g.message()
    assert compare_gate({"min_gain": -0.1}, out).passed
    none = compare_gate({"min_gain": 0.0}, {"incumbent": None, "note": "m has no alias"})
    assert none.passed and "m has no alias" in none.message()
