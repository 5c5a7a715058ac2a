"""The console gallery's queries: filters and keyset pages straight from the DB, issues from
the cached report, item details, the distribution and version diffs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text

from autovision.data import gallery as G
from autovision.data import report as _report
from autovision.data.dataset import Item
from autovision.data.edit import exclude, relabel
from autovision.data.report import dataset_report
from autovision.errors import DatasetError

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

HOSTILE = [
    "%",
    "_",
    "/",
    "\\",
    "%_",
    "'; DROP TABLE items; --",
    '" OR 1=1 --',
    "../",
    "*",
    "[a-z]",
    "\x00",
    "<img src=x onerror=alert(1)>",
]
SOURCES = [
    "cats/Tabby_01.PNG",
    "cats/100%_cat.png",
    "cats/under_score.png",
    "dogs/back\\slash.png",
    "dogs/it's; DROP TABLE items; --.png",
    "dogs/../up.png",
    "dogs/[a-z].png",
    "x/<img src=x onerror=alert(1)>.png",
]


def png(seed: int, size: int = 12) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_items(ws: Any, n: int = 45, multi: bool = False) -> list[Item]:
    labels = ["cat", "cats", "bobcat", "dog", "<img src=x onerror=alert(1)>"]
    items = []
    for i in range(1, n + 1):
        # Items 1..5 share blobs with 6..10: exact duplicates, some with other labels.
        sha = ws.blobs.put(png(i if i > 10 else (i - 1) % 5))
        if multi:
            labs: tuple[str, ...] = () if i % 9 == 0 else tuple(labels[: 1 + i % 3])
        else:
            labs = () if i % 9 == 0 else (labels[i % 5],)
        source = SOURCES[i % len(SOURCES)].replace(".", f"_{i}.", 1)
        split = ("train", "validation", "test", "unassigned")[i % 4]
        items.append(
            Item(
                id=i,
                sha256=sha,
                source=source,
                labels=labs,
                split=split,
                width=12,
                height=12,
                format="PNG",
                stats={"brightness": 0.5},
            )
        )
    return items


@pytest.fixture
def single(workspace):
    return workspace.create_version("pets", make_items(workspace), multi_label=False)


@pytest.fixture
def multi(workspace):
    return workspace.create_version("tags", make_items(workspace, 40, True), multi_label=True)


def walk(ws: Any, ref: str, limit: int = 7, **filters: Any) -> tuple[list[int], list[int]]:
    """Every page of a filter: the ids in order and the totals each page reported."""
    ids, totals, after = [], [], None
    for _ in range(1000):
        page = G.gallery_page(ws, ref, after=after, limit=limit, **filters)
        assert len(page["items"]) <= limit
        ids += [it["id"] for it in page["items"]]
        totals.append(page["total"])
        after = page["next"]
        if after is None:
            return ids, totals
        assert after == page["items"][-1]["id"]
    raise AssertionError("pagination did not end")


def expected(ds, *, label=None, split=None, filename=None, ids=None) -> list[int]:
    return [
        it.id
        for it in ds.items
        if (label is None or label in it.labels)
        and (split is None or it.split == split)
        and (filename is None or filename.lower() in it.source.lower())
        and (ids is None or it.id in ids)
    ]


@pytest.mark.parametrize("fixture", ["single", "multi"])
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"label": "cat"},
        {"label": "cats"},
        {"label": "<img src=x onerror=alert(1)>"},
        {"label": "nothing"},
        {"split": "test"},
        {"split": "unassigned"},
        {"filename": "TABBY"},
        {"filename": "cats/"},
        {"label": "dog", "split": "train", "filename": "dogs"},
    ],
)
def test_pages_are_complete_stable_and_filtered(request, workspace, fixture, filters) -> None:
    ds = request.getfixturevalue(fixture)
    want = expected(ds, **filters)
    for limit in (1, 7, 500):
        ids, totals = walk(workspace, ds.ref, limit, **filters)
        assert ids == want  # every match once, in id order, across pages
        assert set(totals) == {len(want)}
    again, _ = walk(workspace, ds.ref, 7, **filters)
    assert again == want


def test_page_fields_and_no_item_objects_loaded(workspace, single, monkeypatch) -> None:
    monkeypatch.setattr(type(workspace), "dataset", lambda *a, **k: pytest.fail("loaded"))
    page = G.gallery_page(workspace, "pets@1", limit=3)
    first = single.items[0]
    assert page["items"][0] == {
        "id": 1,
        "source": first.source,
        "labels": list(first.labels),
        "split": first.split,
        "width": 12,
        "height": 12,
        "sha256": first.sha256,
    }
    assert (page["next"], page["total"], page["version"]) == (3, 45, 1)
    assert G.gallery_page(workspace, "pets", after=44)["items"][0]["id"] == 45
    assert G.gallery_page(workspace, "pets", after=45) == {
        "dataset": "pets",
        "version": 1,
        "items": [],
        "next": None,
        "total": 45,
    }
    assert G.gallery_page(workspace, "pets", after="40", label="")["next"] is None


@pytest.mark.parametrize("needle", HOSTILE)
def test_hostile_filename_filters_are_plain_substrings(workspace, single, needle) -> None:
    ids, _ = walk(workspace, single.ref, 5, filename=needle)
    assert ids == expected(single, filename=needle)
    with workspace.engine.connect() as conn:  # nothing was executed
        assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 45
    labelled, _ = walk(workspace, single.ref, 5, label=needle)
    assert labelled == expected(single, label=needle)


def test_bad_arguments(workspace, single) -> None:
    for after in ("1 OR 1=1", -1, 1.5, True, "abc"):
        with pytest.raises(DatasetError, match="invalid gallery cursor"):
            G.gallery_page(workspace, "pets", after=after)
    for limit in (0, 501, "10"):
        with pytest.raises(DatasetError, match="invalid page size"):
            G.gallery_page(workspace, "pets", limit=limit)
    with pytest.raises(DatasetError, match="unknown issue 'nope'"):
        G.gallery_page(workspace, "pets", issue="nope")
    with pytest.raises(DatasetError, match="no version 9"):
        G.gallery_page(workspace, "pets@9")
    with pytest.raises(DatasetError, match="no dataset named 'cows'"):
        G.gallery_page(workspace, "cows")
    with pytest.raises(DatasetError, match="invalid label filter"):
        G.gallery_page(workspace, "pets", label=["cat"])


def issue_ids(report: dict[str, Any], kind: str) -> set[int]:
    """The images of an issue; duplicates by their "duplicate" tag, whichever list shows the
    group (the report lists each finding once: a leaking exact pair under split_leakage)."""
    tag = {"exact_duplicates": "exact", "near_duplicates": "near"}.get(kind)
    if tag is None:
        return {m["id"] for g in report["issues"][kind] for m in g["images"]}
    lists = ("exact_duplicates", "near_duplicates", "conflicting_labels", "split_leakage")
    return {
        m["id"]
        for name in lists
        for g in report["issues"][name]
        if g.get("duplicate") == tag
        for m in g["images"]
    }


def test_issue_filters_match_the_report(workspace, single) -> None:
    report = dataset_report(single)
    dups = issue_ids(report, "exact_duplicates")
    assert dups == set(range(1, 11))
    small = {e["id"] for e in report["issues"]["quality"]["small"]}
    assert small
    for issue, want in [
        ("exact_duplicates", dups),
        ("conflicting_labels", issue_ids(report, "conflicting_labels")),
        ("small", small),
        ("quality.small", small),
        ("quality", small),
        ("blurry", set()),
        ("label_issues", set()),  # not computed yet: no image has it
    ]:
        ids, totals = walk(workspace, single.ref, 3, issue=issue)
        assert ids == sorted(want), issue
        assert set(totals) == {len(want)}
    ids, _ = walk(workspace, single.ref, 2, issue="exact_duplicates", label="cats", split="train")
    assert ids == expected(single, label="cats", split="train", ids=dups)


def test_issue_index_is_cached_per_content(workspace, single, monkeypatch) -> None:
    G.gallery_page(workspace, "pets", issue="exact_duplicates")
    files = list((workspace.cache_dir / "gallery").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith(single.content_hash[:40])
    G._indexes.clear()  # a new console process: the JSON is read, the report not recomputed
    monkeypatch.setattr(_report, "dataset_report", lambda *a, **k: pytest.fail("recomputed"))
    assert G.gallery_page(workspace, "pets", issue="exact_duplicates")["total"] == 10
    assert G.issue_index(workspace, "pets")["ids"]["exact_duplicates"] == list(range(1, 11))


def test_stored_checks_give_their_issues(workspace, single, monkeypatch) -> None:
    """Issue 14 adds ``checks=`` to the report; a local fake of it stands in until then."""
    from autovision.checks.store import save_check

    real = _report.dataset_report

    def with_checks(ds, *, checks=None, **kw):
        out = real(ds, **kw)
        for kind in ("label_issues", "label_issues_test"):
            if "label_issues" in (checks or {}):
                out["issues"][kind] = checks["label_issues"][kind]
        if "outliers" in (checks or {}):
            out["issues"]["outliers"] = checks["outliers"]["outliers"]
        return out

    monkeypatch.setattr(_report, "dataset_report", with_checks)
    assert G.gallery_page(workspace, "pets", issue="label_issues")["total"] == 0
    entry = {"id": 4, "source": "s", "split": "train", "label": "dog", "suggested": "cat"}
    result = {"label_issues": [{**entry, "score": 0.1}], "label_issues_test": []}
    save_check(workspace, single, "label_issues", result)
    save_check(workspace, single, "outliers", {"outliers": [{"id": 7, "score": 9.0}]})
    # A new check run is a new cache entry: no stale issues.
    assert [i["id"] for i in G.gallery_page(workspace, "pets", issue="label_issues")["items"]] == [
        4
    ]
    assert G.gallery_page(workspace, "pets", issue="outliers")["total"] == 1
    detail = G.item_detail(workspace, "pets", 4)
    found = [i for i in detail["issues"] if i["issue"] == "label_issues"]
    assert found and found[0]["suggested"] == "cat" and found[0]["score"] == 0.1
    assert set(detail["checks_computed"]) == {"label_issues", "label_issues_test", "outliers"}
    assert len(list((workspace.cache_dir / "gallery").glob("*.json"))) == 1


def test_item_detail(workspace, single) -> None:
    d = G.item_detail(workspace, "pets@1", 3)
    it = single.by_id()[3]
    assert (d["id"], d["source"], d["sha256"], d["split"]) == (3, it.source, it.sha256, it.split)
    assert d["labels"] == list(it.labels) and d["stats"] == {"brightness": 0.5}
    kinds = {i["issue"] for i in d["issues"]}
    # 3 and 8 are exact copies in two splits: listed once, as leakage (an exact group)
    assert {"split_leakage", "small"} <= kinds and "exact_duplicates" not in kinds
    group = next(i for i in d["issues"] if i["issue"] == "split_leakage")
    assert sorted(group["group"]) == [3, 8] and group["duplicate"] == "exact"
    assert [m["id"] for m in d["duplicates"]] == [8]
    assert d["duplicates"][0]["source"] == single.by_id()[8].source
    assert G.item_detail(workspace, "pets", 30)["duplicates"] == []
    with pytest.raises(DatasetError, match="pets@1 has no image with id 999"):
        G.item_detail(workspace, "pets", 999)


@pytest.mark.parametrize("fixture", ["single", "multi"])
def test_distribution_is_the_reports(request, workspace, fixture) -> None:
    ds = request.getfixturevalue(fixture)
    report = dataset_report(ds)
    dist = G.distribution(workspace, ds.ref)
    for key in ("images", "splits", "labels", "label_split_counts", "imbalance_ratio"):
        assert dist[key] == report[key], key
    assert dist["label_warnings"] == report["label_warnings"]
    assert dist["multi_label"] is ds.multi_label
    assert G.distribution(workspace, ds.ref) is dist  # memoised: versions never change


def test_version_diff(workspace, single, tmp_path) -> None:
    v2 = exclude(workspace, "pets", ids=[2, 5])
    csv = tmp_path / "relabel.csv"
    csv.write_text("3,cat\n4,\n")
    v3 = relabel(workspace, v2.ref, csv)
    d = G.version_diff(workspace, "pets", 1, v3.version)
    assert (d["a"], d["b"], d["added"], d["removed"]) == (1, 3, [], [2, 5])
    assert d["relabeled"] == [
        {"id": 3, "from": list(single.by_id()[3].labels), "to": ["cat"]},
        {"id": 4, "from": list(single.by_id()[4].labels), "to": []},
    ]
    assert d["moved_split"] == []
    back = G.version_diff(workspace, "pets", 3, 1)
    assert (back["added"], back["removed"]) == ([2, 5], [])
    moved = [Item(**{**it.__dict__, "split": "train"}) if it.id == 6 else it for it in single.items]
    v4 = workspace.create_version("pets", moved + make_items(workspace, 46)[45:], multi_label=False)
    d = G.version_diff(workspace, "pets", 1, v4.version)
    assert d["added"] == [46] and d["relabeled"] == []
    assert d["moved_split"] == [{"id": 6, "from": single.by_id()[6].split, "to": "train"}]


def test_gallery_indexes_reach_an_existing_database(tmp_path) -> None:
    from autovision.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    sqlite = ws.engine.dialect.name == "sqlite"  # PostgreSQL has no index on a json column
    wanted = {"ix_items_version_split_item"} | (
        {"ix_items_version_labels_item"} if sqlite else set()
    )
    with ws.engine.begin() as conn:
        for index in wanted:
            conn.execute(text(f"DROP INDEX {index}"))
        # a database from before the gallery indexes: its migration (0005) adds them
        conn.execute(
            text("UPDATE autovision_alembic_version SET version_num='0004_dataset_checks'")
        )
    ws.engine.dispose()
    ws = Workspace(tmp_path / "ws")
    ws.create_version("pets", make_items(ws), multi_label=False)
    with ws.engine.connect() as conn:
        names = {ix["name"] for ix in sa_inspect(conn).get_indexes("items")}
        assert wanted <= names
        if not sqlite:
            return
        # A label page reads the labels index, not every row of the version.
        q = str(
            G.select(G.ItemRow.item_id)
            .where(G.ItemRow.version_id == 1, G._has_label(ws, G._resolve(ws, "pets"), "dog"))
            .compile(compile_kwargs={"literal_binds": True})
        )
        plan = " ".join(str(r) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {q}")))
    assert "ix_items_version_labels_item" in plan
