"""The data report: counts, label warnings, duplicates, conflicts, leakage, quality."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from autovision.data.dataset import DatasetVersion, Item
from autovision.data.duplicates import perceptual_hash
from autovision.data.quality import analyze
from autovision.data.report import checks_summary, dataset_report, summary_line

from ._images import photo


@pytest.fixture
def make_item(make_image):
    """``make_item(id, label, split, seed=, img=, fmt=)``: an Item as the importer makes it."""

    def make(
        item_id: int,
        label: str | tuple[str, ...] = "cat",
        split: str = "train",
        *,
        seed: int | None = None,
        img: Image.Image | None = None,
        fmt: str = "PNG",
        quality: int = 90,
    ) -> Item:
        if img is None:
            labels = ("cat", "dog", "bird", "fish")
            index = labels.index(label) if label in labels else 0
            img = make_image(index, 64, item_id if seed is None else seed)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
        data = buf.getvalue()
        decoded = Image.open(io.BytesIO(data)).convert("RGB")
        return Item(
            id=item_id,
            sha256=hashlib.sha256(data).hexdigest(),
            source=f"/data/{item_id}.{fmt.lower()}",
            labels=(label,) if isinstance(label, str) else tuple(label),
            split=split,
            width=decoded.width,
            height=decoded.height,
            format=fmt,
            phash=perceptual_hash(decoded),
            stats=analyze(decoded),
        )

    return make


def version(items, *, multi_label: bool = False, problems=()) -> DatasetVersion:
    return DatasetVersion(
        name="pets", version=3, multi_label=multi_label, items=tuple(items), problems=problems
    )


def ids(group: dict) -> list[int]:
    return [m["id"] for m in group["images"]]


def test_counts_warnings_and_imbalance(make_item) -> None:
    items = [make_item(i, "cat", "train" if i < 10 else "test") for i in range(12)]
    items += [make_item(100 + i, "dog", "validation") for i in range(4)]
    problem = {"source": "x.png", "line": None, "reason": "unreadable", "message": "bad"}
    report = dataset_report(version(items, problems=(problem,)))

    assert report["dataset"] == "pets" and report["version"] == 3
    assert report["images"] == 16
    assert report["labels"] == {"cat": 12, "dog": 4}
    assert report["splits"] == {"train": 10, "validation": 4, "test": 2}
    assert report["multi_label"] is False
    assert report["label_split_counts"] == {
        "cat": {"train": 10, "validation": 0, "test": 2},
        "dog": {"train": 0, "validation": 4, "test": 0},
    }
    assert report["imbalance_ratio"] == 3.0
    warnings = {w["label"]: w for w in report["label_warnings"]}
    assert warnings["dog"]["level"] == "error" and warnings["dog"]["count"] == 4
    assert "too few to train" in warnings["dog"]["message"]
    assert warnings["cat"]["level"] == "warning"
    assert "below the recommended minimum of 100" in warnings["cat"]["message"]
    assert report["problems"] == [problem]
    assert report["summary"]["label_warnings"] == {"error": 1, "warning": 1}
    assert report["summary"]["problems"] == 1
    json.dumps(report)


def test_no_warning_from_100_images_and_no_ratio_without_labels(make_item) -> None:
    base = make_item(0, "cat")
    many = [Item(i, f"s{i}", f"{i}.png", ("cat",), "train", 64, 64, "PNG") for i in range(100)]
    assert dataset_report(version(many))["label_warnings"] == []
    unlabeled = dataset_report(version([replace(base, labels=())]))
    assert unlabeled["imbalance_ratio"] is None and unlabeled["labels"] == {}


def test_exact_duplicates_and_conflicting_labels(make_item, make_image) -> None:
    img = make_image(0, 64, 7)
    items = [
        make_item(1, "cat", img=img),
        make_item(2, "dog", img=img),  # same bytes, other label
        make_item(3, "cat", img=make_image(1, 64, 8)),
        make_item(4, "cat", img=make_image(1, 64, 8)),  # same bytes, same label
        make_item(5, "cat", seed=9),
    ]
    report = dataset_report(version(items))
    issues = report["issues"]
    # each finding once: the conflicting copies 1, 2 are not listed under exact_duplicates too
    assert [ids(g) for g in issues["exact_duplicates"]] == [[3, 4]]
    assert issues["exact_duplicates"][0]["duplicate"] == "exact"
    member = issues["exact_duplicates"][0]["images"][0]
    assert member == {"id": 3, "source": "/data/3.png", "labels": ["cat"], "split": "train"}
    assert [(g["kind"], ids(g), g["labels"]) for g in issues["conflicting_labels"]] == [
        ("exact", [1, 2], [["cat"], ["dog"]])
    ]
    assert issues["conflicting_labels"][0]["duplicate"] == "exact"
    assert issues["near_duplicates"] == [] and issues["split_leakage"] == []
    assert report["summary"]["exact_duplicates"] == {"groups": 1, "images": 2}
    assert report["summary"]["conflicting_labels"] == {"groups": 1, "images": 2}


def test_near_duplicates_with_conflicting_labels(make_item) -> None:
    img = photo(11)
    items = [
        make_item(1, "bird", img=img),
        make_item(2, "fish", img=img.resize((80, 60)), fmt="JPEG", quality=30),
        make_item(3, "bird", seed=12),
    ]
    issues = dataset_report(version(items))["issues"]
    assert issues["near_duplicates"] == []  # listed once, under conflicting_labels
    assert [(g["kind"], ids(g)) for g in issues["conflicting_labels"]] == [("near", [1, 2])]
    assert issues["conflicting_labels"][0]["duplicate"] == "near"
    assert issues["conflicting_labels"][0]["method"] == "phash"


def test_near_group_is_not_a_conflict_only_because_of_its_exact_copies(make_item) -> None:
    img = photo(21)
    items = [
        make_item(1, "cat", img=img),
        make_item(2, "dog", img=img),  # exact copy, conflicting
        make_item(3, "cat", img=img, fmt="JPEG", quality=30),  # near copy, agrees with 1
    ]
    unlabeled_near = replace(items[2], labels=())
    issues = dataset_report(version([*items[:2], unlabeled_near]))["issues"]
    assert [ids(g) for g in issues["near_duplicates"]] == [[1, 2, 3]]
    assert [(g["kind"], ids(g)) for g in issues["conflicting_labels"]] == [("exact", [1, 2])]
    # With a labeled near copy, "dog" (2) and "cat" (3) are different files that disagree.
    issues = dataset_report(version(items))["issues"]
    kinds = [(g["kind"], ids(g)) for g in issues["conflicting_labels"]]
    assert kinds == [("exact", [1, 2]), ("near", [2, 3])]


def hashed(item_id: int, value: int, label: str, split: str = "train") -> Item:
    labels = (label,) if label else ()
    return Item(
        item_id,
        f"sha{item_id}",
        f"{item_id}.png",
        labels,
        split,
        64,
        64,
        "PNG",
        phash=f"{value:016x}",
    )


def test_a_chain_of_near_duplicates_is_not_a_conflict_or_a_leak() -> None:
    """A-B and B-C match directly (3 bits), A-C do not (6 bits): only direct pairs count."""
    a, b, c = 0, 0b111, 0b111111
    chain = [hashed(1, a, "cat"), hashed(2, b, ""), hashed(3, c, "dog", "test")]
    report = dataset_report(version(chain), max_distance=4)
    assert [ids(g) for g in report["issues"]["near_duplicates"]] == [[1, 2, 3]]
    assert report["issues"]["conflicting_labels"] == []
    assert report["issues"]["split_leakage"] == []

    direct = [hashed(1, a, "cat"), hashed(2, b, "cat"), hashed(3, c, "dog", "test")]
    issues = dataset_report(version(direct), max_distance=4)["issues"]
    # 2-3 disagree and straddle splits: listed once, under conflicting_labels, with its splits
    assert [
        (g["kind"], ids(g), g["labels"], g["splits"]) for g in issues["conflicting_labels"]
    ] == [("near", [2, 3], [["cat"], ["dog"]], ["train", "test"])]
    assert issues["split_leakage"] == []


def test_split_leakage_exact_and_near(make_item) -> None:
    a, b = photo(31), photo(32)
    items = [
        make_item(1, "cat", "train", img=a),
        make_item(2, "cat", "test", img=a),  # exact copy in another split
        make_item(3, "dog", "train", img=b),
        make_item(4, "dog", "validation", img=b.resize((80, 60)), fmt="JPEG", quality=30),
        make_item(5, "dog", "train", img=b.resize((120, 90))),  # near, same split as 3
        make_item(6, "cat", "train", seed=33),
    ]
    report = dataset_report(version(items))
    leaks = [(g["kind"], ids(g), g["splits"]) for g in report["issues"]["split_leakage"]]
    assert leaks == [
        ("exact", [1, 2], ["train", "test"]),
        ("near", [3, 4, 5], ["train", "validation"]),
    ]
    assert report["summary"]["split_leakage"] == {"groups": 2, "images": 5}


def test_quality_flags_in_report(make_item, make_image) -> None:
    dark = Image.eval(make_image(0, 64, 41), lambda v: v // 6)
    tiny = make_image(1, 16, 42)
    items = [make_item(1, "cat", img=dark), make_item(2, "cat", img=tiny), make_item(3, seed=43)]
    report = dataset_report(version(items))
    quality = report["issues"]["quality"]
    assert [e["id"] for e in quality["dark"]] == [1]
    assert quality["small"] == [{"id": 2, "source": "/data/2.png", "value": 16.0}]
    assert report["summary"]["quality"]["dark"] == 1
    assert report["summary"]["notes"] == []


def test_dataset_wide_flag_is_a_note(make_item, make_image) -> None:
    # Small, not grayscale: an all-grayscale set gets no grayscale flags (data/quality.py).
    gray = [make_image(i % 2, 16, 50 + i).convert("L").convert("RGB") for i in range(4)]
    items = [make_item(i, "cat" if i % 2 else "dog", img=g) for i, g in enumerate(gray)]
    report = dataset_report(version(items))
    assert len(report["issues"]["quality"]["small"]) == 4
    assert report["issues"]["quality"]["grayscale"] == []
    assert [note.split(":")[0] for note in report["summary"]["notes"]] == ["small"]


def test_multi_label_conflicts_compare_label_sets(make_item, make_image) -> None:
    img = make_image(3, 64, 61)
    items = [
        make_item(1, ("cat", "dog"), img=img),
        make_item(2, ("dog", "cat"), img=img),
        make_item(3, ("cat",), img=make_image(0, 64, 62)),
        make_item(4, ("cat", "fish"), img=make_image(0, 64, 62)),
    ]
    report = dataset_report(version(items, multi_label=True))
    assert report["multi_label"] is True
    conflicts = [(ids(g), g["labels"]) for g in report["issues"]["conflicting_labels"]]
    assert conflicts == [([3, 4], [["cat"], ["cat", "fish"]])]


def test_report_on_many_items() -> None:
    """20,000 items (no images needed): a smoke test of the vectorised paths, not timed."""
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 20_000, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    stats = {
        "brightness": 0.5,
        "highlight": 0.9,
        "shadow": 0.1,
        "entropy": 6.0,
        "sharpness": 2.0,
        "channel_diff": 0.5,
        "mean_r": 0.5,
        "mean_g": 0.4,
        "mean_b": 0.3,
    }
    items = [
        Item(
            i,
            f"{i % 19_000:064x}",
            f"{i}.jpg",
            (f"l{i % 7}",),
            ("train", "test")[i % 2],
            640,
            480,
            "JPEG",
            phash=f"{int(h):016x}",
            stats=stats,
        )
        for i, h in enumerate(hashes)
    ]
    report = dataset_report(version(items))
    # every copy pair differs in its label (19,000 % 7 == 2): conflicts, not also duplicates
    assert report["summary"]["conflicting_labels"]["groups"] == 1000
    assert report["summary"]["exact_duplicates"]["groups"] == 0
    assert report["images"] == 20_000


# ---- each finding once, content pairs, model-based checks (issue 14) -------------------------


def far_hashed(item_id: int, label: str, split: str = "train", sha: str | None = None) -> Item:
    """Items whose pHashes are far apart (no phash pairs): only content pairs join them."""
    value = int.from_bytes(hashlib.sha256(str(item_id).encode()).digest()[:8], "big")
    return replace(hashed(item_id, value, label, split), sha256=sha or f"sha{item_id}")


def content(*pairs: tuple[int, int, float]) -> dict:
    result = {"method": "cosine", "threshold": 0.9, "checked": 9, "computed_at": "t"}
    return {"content_duplicates": {**result, "pairs": [list(p) for p in pairs]}}


def test_each_finding_is_listed_once_and_exclusions_are_unchanged(make_item, make_image) -> None:
    """A conflicting or leaking group is not repeated under the duplicates; excluding
    exact_duplicates still dedupes every exact group, whichever list shows it."""
    from autovision.data.edit import issue_exclusions

    a, b, c = make_image(0, 64, 1), make_image(1, 64, 2), make_image(2, 64, 3)
    items = [
        make_item(1, "cat", "train", img=a),
        make_item(2, "dog", "test", img=a),  # conflicting and leaking: conflicting only
        make_item(3, "cat", "train", img=b),
        make_item(4, "cat", "test", img=b),  # leaking only
        make_item(5, "cat", "train", img=c),
        make_item(6, "cat", "train", img=c),  # plain duplicate
    ]
    report = dataset_report(version(items))
    issues = report["issues"]
    listed = {
        name: [ids(g) for g in issues[name]]
        for name in ("conflicting_labels", "split_leakage", "exact_duplicates", "near_duplicates")
    }
    assert listed == {
        "conflicting_labels": [[1, 2]],
        "split_leakage": [[3, 4]],
        "exact_duplicates": [[5, 6]],
        "near_duplicates": [],
    }
    assert issues["conflicting_labels"][0]["splits"] == ["train", "test"]
    groups = [g for name in listed for g in issues[name]]
    assert all(g["duplicate"] == "exact" for g in groups)
    assert issue_exclusions(report, ["exact_duplicates"]) == {2, 4, 6}  # as before issue 14
    assert issue_exclusions(report, ["split_leakage"]) == {2, 4}
    assert issue_exclusions(report, ["conflicting_labels"]) == {1, 2}


def test_content_pairs_join_the_near_duplicates() -> None:
    items = [
        far_hashed(1, "cat"),
        far_hashed(2, "cat"),  # a crop of 1: only the embeddings see it
        far_hashed(3, "cat"),
        far_hashed(4, "dog"),  # content copy of 3 with another label
        far_hashed(5, "cat", "test"),  # content copy of 1 in another split
        far_hashed(6, "cat", sha="sha1"),  # exact copy of 1
        far_hashed(7, "cat"),
    ]
    assert dataset_report(version(items))["issues"]["near_duplicates"] == []
    checks = content((1, 2, 0.95), (3, 4, 0.93), (1, 5, 0.91), (1, 6, 1.0), (7, 99, 0.99))
    report = dataset_report(version(items), checks=checks)
    issues = report["issues"]
    # 1, 2, 5 and the exact copy 6 are one group; 6-1 (same file) and 99 (not here) are no pairs
    assert [(ids(g), g["method"], g["duplicate"]) for g in issues["near_duplicates"]] == [
        ([1, 2, 5, 6], "content", "near")
    ]
    assert [(g["kind"], ids(g), g["method"]) for g in issues["conflicting_labels"]] == [
        ("near", [3, 4], "content")
    ]
    assert [(ids(g), g["splits"]) for g in issues["split_leakage"]] == [([1, 5], ["train", "test"])]
    assert issues["exact_duplicates"] == [
        {
            "duplicate": "exact",
            "images": [m for m in issues["near_duplicates"][0]["images"] if m["id"] in (1, 6)],
        }  # fmt: skip
    ]
    assert report["checks"]["content_duplicates"]["pairs"] == 5
    from autovision.data.edit import issue_exclusions

    assert issue_exclusions(report, ["near_duplicates"]) == {2, 4, 5, 6}


def test_phash_and_content_pairs_say_both_methods(make_item) -> None:
    img = photo(71)
    items = [
        make_item(1, "cat", img=img),
        make_item(2, "cat", img=img.resize((80, 60)), fmt="JPEG", quality=30),
        make_item(3, "cat", seed=72),
    ]
    report = dataset_report(version(items), checks=content((1, 2, 0.97)))
    assert [(ids(g), g["method"]) for g in report["issues"]["near_duplicates"]] == [
        ([1, 2], "content+phash")
    ]


def test_model_based_checks_are_shown_when_computed() -> None:
    items = [far_hashed(1, "cat"), far_hashed(2, "dog", "validation"), far_hashed(3, "cat", "test")]
    plain = dataset_report(version(items))
    assert "label_issues" not in plain["issues"] and "outliers" not in plain["issues"]
    assert plain["checks"] == {} and "label_issues" not in plain["summary"]
    entry = {"id": 2, "source": "2.png", "split": "validation", "label": "dog",
             "suggested": "cat", "score": 0.03, "suggested_score": 0.9}  # fmt: skip
    checks = {
        "label_issues": {
            "method": "cleanlab", "folds": 5, "checked": 2, "checked_test": 1,
            "multi_label": False, "label_issues": [entry],
            "label_issues_test": [{**entry, "id": 3, "split": "test", "label": "cat",
                                   "suggested": "dog"}],
            "computed_at": "2026-01-01T00:00:00", "params": {},
        },
        "outliers": {
            "method": "knn", "k": 10, "threshold": 0.6, "checked": 3,
            "outliers": [{"id": 1, "score": 0.8}, {"id": 42, "score": 0.7}],
            "ranking": [{"id": 1, "score": 0.8}], "computed_at": "2026-01-02T00:00:00",
        },
    }  # fmt: skip
    report = dataset_report(version(items), checks=checks)
    issues = report["issues"]
    assert [(e["id"], e["suggested"], e["labels"]) for e in issues["label_issues"]] == [
        (2, "cat", ["dog"])
    ]
    assert [(e["id"], e["split"]) for e in issues["label_issues_test"]] == [(3, "test")]
    # an id not in this version (42) is left out; entries get source, split and labels
    assert issues["outliers"] == [
        {"id": 1, "score": 0.8, "source": "1.png", "split": "train", "labels": ["cat"]}
    ]
    assert report["summary"]["label_issues"] == 1
    assert report["summary"]["label_issues_test"] == 1
    assert report["summary"]["outliers"] == 1
    assert report["checks"]["label_issues"] == {
        "computed_at": "2026-01-01T00:00:00", "method": "cleanlab", "folds": 5,
        "checked": 2, "checked_test": 1, "found": 1, "found_test": 1,
    }  # fmt: skip
    assert report["checks"]["outliers"]["found"] == 1
    assert report["checks"]["outliers"]["threshold"] == 0.6
    json.dumps(report)  # plain JSON for --json


# ---- checks_summary / summary_line (the line an import ends with) ------------------------


def test_checks_summary_counts_the_report(make_item, make_image) -> None:
    img = make_image(0, 64, 70)
    items = [
        make_item(1, "cat", img=img),
        make_item(2, "cat", "test", img=img),  # leaks 1 into test
        make_item(3, "dog", seed=71),
        make_item(4, "dog", img=make_image(1, 16, 72)),  # small
    ]
    report = dataset_report(version(items))
    counts = checks_summary(report)
    assert counts["split_leakage"] == 1 and counts["conflicting_labels"] == 0
    assert counts["quality"] == {"small": 1} and counts["quality_flags"] == 1
    assert set(counts) >= {"exact_duplicates", "near_duplicates", "quality"}
    # Model-based kinds are counted when the report has them (ints or group counts).
    report["summary"]["label_issues"] = 3
    report["summary"]["outliers"] = {"images": 2}
    assert checks_summary(report)["label_issues"] == 3
    assert checks_summary(report)["outliers"] == 2


def test_summary_line_names_only_what_was_found() -> None:
    clean = {"exact_duplicates": 0, "conflicting_labels": 0, "split_leakage": 0}
    assert summary_line(clean, "pets") == "no duplicates, conflicts or leaks found"
    found = {
        "exact_duplicates": 12,
        "near_duplicates": 0,
        "conflicting_labels": 3,
        "split_leakage": 4,
        "quality_flags": 7,
    }
    assert summary_line(found, "pets") == (
        "12 exact duplicate groups, 3 conflicting labels, 4 leaks across splits, "
        "7 quality flags: see `autovision dataset show pets`"
    )
    one = {"exact_duplicates": 1, "split_leakage": 1, "label_issues": 1, "outliers": 2}
    assert summary_line(one, "p@2") == (
        "1 exact duplicate group, 1 leak across splits, 1 likely label error, 2 outliers: "
        "see `autovision dataset show p@2`"
    )
    assert summary_line({**clean, "quality_flags": 1}, "pets") == (
        "no duplicates, conflicts or leaks found; 1 quality flag: "
        "see `autovision dataset show pets`"
    )
