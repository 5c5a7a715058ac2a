"""Readers: CSV (cloud AutoML), JSONL (Vertex AI) and folder layouts, problems per row."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autovision.data.problems import (
    BAD_LABEL,
    BAD_ROW,
    PATH_NOT_ALLOWED,
    URL_NOT_ALLOWED,
    Problem,
)
from autovision.data.readers import (
    FORMATS,
    Record,
    Scope,
    check_label,
    detect_format,
    get_reader,
)
from autovision.errors import DatasetError


def read(fmt: str, source: Path | str, **scope) -> tuple[list[Record], list[Problem]]:
    out = list(get_reader(fmt).read(str(source), scope=Scope(**scope)))
    return [r for r in out if isinstance(r, Record)], [p for p in out if isinstance(p, Problem)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cat", "cat"),
        ("  golden retriever ", "golden retriever"),
        ("0", "0"),
        ("é-ü_ß", "é-ü_ß"),
        ("x" * 128, "x" * 128),
        ("", None),
        ("   ", None),
        ("x" * 129, None),
        ("bad\x07bell", None),
        ("tab\tinside", None),
        ("a/b", None),
        ("a\\b", None),
        ("..", None),
    ],
)
def test_label_rule(text: str, expected: str | None) -> None:
    label, why = check_label(text)
    assert label == expected
    assert bool(why) == (expected is None)


def test_get_reader_by_name() -> None:
    assert {get_reader(f).name for f in FORMATS} == {"folder", "csv", "jsonl"}
    with pytest.raises(DatasetError, match="unknown source format 'xml'"):
        get_reader("xml")


# ---- CSV ---------------------------------------------------------------------------------


def test_csv_layout(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text(
        "TRAIN,a.png,cat\n"
        "training,b.png,dog\n"
        "\n"
        "Validation,sub/c.png,cat,\n"
        "test,d.png,dog,cat,meta:camera=x1 ,meta:site = north\n"
        "UNASSIGNED,e.png\n"
        "f.png,bird\n"
        f"{tmp_path.resolve()}/g.png,\n"
        '"h, with comma.png",cat,,\n'
    )
    recs, problems = read("csv", tmp_path / "d.csv")
    assert problems == []
    got = [(r.source, r.line, r.labels, r.ml_use, r.metadata) for r in recs]
    assert got == [
        ("a.png", 1, ("cat",), "train", {}),
        ("b.png", 2, ("dog",), "train", {}),
        ("sub/c.png", 4, ("cat",), "validation", {}),
        ("d.png", 5, ("cat", "dog"), "test", {"camera": "x1", "site": "north"}),
        ("e.png", 6, (), None, {}),
        ("f.png", 7, ("bird",), None, {}),
        (f"{tmp_path.resolve()}/g.png", 8, (), None, {}),
        ("h, with comma.png", 9, ("cat",), None, {}),
    ]
    assert recs[0].uri == str(tmp_path.resolve() / "a.png")
    assert recs[2].uri == str(tmp_path.resolve() / "sub" / "c.png")
    assert recs[6].uri == str(tmp_path.resolve() / "g.png")


def test_csv_header_bom_and_crlf(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("\ufeffml_use,image_path,label\r\nTEST,a.png,x\r\n".encode())
    recs, problems = read("csv", tmp_path / "d.csv")
    assert problems == []
    assert [(r.source, r.line, r.ml_use) for r in recs] == [("a.png", 2, "test")]


def test_csv_urls(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text(
        f"file://{tmp_path}/a.png,cat\ns3://bucket/b.jpg,dog\nhttps://example.com/c.jpg,dog\n"
    )
    recs, problems = read("csv", tmp_path / "d.csv", allow_urls=True)
    assert problems == []
    assert [r.uri for r in recs] == [
        str(tmp_path.resolve() / "a.png"),
        "s3://bucket/b.jpg",
        "https://example.com/c.jpg",
    ]
    recs, problems = read("csv", tmp_path / "d.csv")
    assert [r.line for r in recs] == [1]
    assert [(p.line, p.reason) for p in problems] == [(2, URL_NOT_ALLOWED), (3, URL_NOT_ALLOWED)]
    assert "--allow-urls" in problems[0].message


def test_csv_urls_with_unsupported_schemes(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("ftp://h/a.png,cat\nsftp://h/b.png,cat\n")
    recs, problems = read("csv", tmp_path / "d.csv", allow_urls=True)
    assert recs == [] and [p.reason for p in problems] == [URL_NOT_ALLOWED] * 2


def test_csv_bad_rows_and_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text(
        "TRAIN,ok.png,cat\n"  # 1
        'TRAIN,"broken.png,cat\n'  # 2 unclosed quote
        "TRAIN,,cat\n"  # 3 no path
        "TRAIN\n"  # 4 no path
        "x.png,meta:novalue\n"  # 5 metadata without =
        "y.png,   \n"  # 6 empty label
        "z.png,bad\x01label\n"  # 7 control character
        f"w.png,{'l' * 200}\n"  # 8 too long
        "v.png,a/b\n"  # 9 path separator
        "ok2.png,dog\n"  # 10
    )
    recs, problems = read("csv", tmp_path / "d.csv")
    assert [r.source for r in recs] == ["ok.png", "ok2.png"]
    assert [(p.line, p.reason) for p in problems] == [
        (2, BAD_ROW),
        (3, BAD_ROW),
        (4, BAD_ROW),
        (5, BAD_ROW),
        (6, BAD_LABEL),
        (7, BAD_LABEL),
        (8, BAD_LABEL),
        (9, BAD_LABEL),
    ]
    assert all(f"line {p.line}" in p.message for p in problems)
    assert problems[4].source == "y.png" and "empty label" in problems[4].message


def test_csv_invalid_utf8_line_is_bad_row(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"a.png,cat\nb\xff.png,dog\n")
    recs, problems = read("csv", tmp_path / "d.csv")
    assert [r.source for r in recs] == ["a.png"]
    assert [(p.line, p.reason) for p in problems] == [(2, BAD_ROW)]


def test_csv_paths_escaping_the_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "imgs").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    (data / "imgs" / "inside.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", data / "link.png")
    os.symlink(data / "imgs" / "inside.png", data / "ok-link.png")
    (data / "d.csv").write_text(
        "../secret.png,a\n"
        "imgs/../../secret.png,a\n"
        "link.png,a\n"
        "imgs/../imgs/inside.png,a\n"
        "ok-link.png,a\n"
        f"{tmp_path / 'secret.png'},a\n"
        "file://../secret.png,a\n"
        f"file://{tmp_path / 'secret.png'},a\n"
        "file:///etc/hostname,a\n"
        "/etc/hostname,a\n"
        f"file://{data / 'imgs' / 'inside.png'},a\n"
        "file://imgs/inside.png,a\n"
        "file://localhost/etc/hostname,a\n"
    )
    recs, problems = read("csv", data / "d.csv")
    assert [(p.line, p.reason) for p in problems] == [
        (n, PATH_NOT_ALLOWED) for n in (1, 2, 3, 6, 7, 8, 9, 10, 13)
    ]
    assert problems[3].source == str(tmp_path / "secret.png")
    assert "outside the folder of the file" in problems[3].message
    assert "--allow-root" in problems[3].message
    assert [r.line for r in recs] == [4, 5, 11, 12]
    assert recs[2].uri == recs[3].uri == str((data / "imgs" / "inside.png").resolve())
    # another root only when allowed: the folder above, not /etc
    recs, problems = read("csv", data / "d.csv", roots=(str(tmp_path),))
    assert [p.line for p in problems] == [9, 10, 13]
    assert [r.line for r in recs] == [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\x89PNG\r\n\x1a\n\x00\x00binary"])
def test_csv_not_a_dataset(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "d.csv").write_bytes(content)
    with pytest.raises(DatasetError, match="d.csv"):
        read("csv", tmp_path / "d.csv")


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        read("csv", tmp_path / "nope.csv")


# ---- JSONL -------------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_layout(tmp_path: Path) -> None:
    ml = "aiplatform.googleapis.com/ml_use"
    src = _jsonl(
        tmp_path / "d.jsonl",
        [
            {
                "imageGcsUri": "a.png",
                "classificationAnnotation": {"displayName": "cat"},
                "dataItemResourceLabels": {ml: "training"},
            },
            "",
            {
                "imageGcsUri": "gs://bucket/b.png",
                "classificationAnnotations": [{"displayName": "dog"}, {"displayName": "cat"}],
                "dataItemResourceLabels": {ml: "TEST"},
                "metadata": {"camera": "x", "n": 3},
            },
            {"imageGcsUri": "c.png"},
            {"imageGcsUri": "d.png", "classificationAnnotations": []},
            {"imageGcsUri": "e.png", "dataItemResourceLabels": {ml: "validation"}},
        ],
    )
    recs, problems = read("jsonl", src, allow_urls=True)
    assert problems == []
    got = [(r.source, r.line, r.labels, r.ml_use, r.metadata, r.multi_label) for r in recs]
    assert got == [
        ("a.png", 1, ("cat",), "train", {}, False),
        ("gs://bucket/b.png", 3, ("cat", "dog"), "test", {"camera": "x", "n": "3"}, True),
        ("c.png", 4, (), None, {}, False),
        ("d.png", 5, (), None, {}, True),
        ("e.png", 6, (), "validation", {}, False),
    ]
    assert recs[1].uri == "gs://bucket/b.png"


def test_jsonl_problems(tmp_path: Path) -> None:
    ml = "aiplatform.googleapis.com/ml_use"
    src = _jsonl(
        tmp_path / "d.jsonl",
        [
            "{not json",  # 1
            "[1, 2]",  # 2
            {"classificationAnnotation": {"displayName": "cat"}},  # 3 no uri
            {"imageGcsUri": "a.png", "classificationAnnotation": {"displayName": ""}},  # 4
            {"imageGcsUri": "b.png", "classificationAnnotation": {"displayName": 7}},  # 5
            {"imageGcsUri": "c.png", "dataItemResourceLabels": {ml: "someday"}},  # 6
            {"imageGcsUri": "d.png", "metadata": {"k": {"nested": 1}}},  # 7
            {"imageGcsUri": "../e.png"},  # 8
            {"imageGcsUri": "f.png", "classificationAnnotations": "cat"},  # 9
            {"imageGcsUri": "ok.png", "classificationAnnotation": {"displayName": "cat"}},  # 10
        ],
    )
    recs, problems = read("jsonl", src)
    assert [r.source for r in recs] == ["ok.png"]
    assert [(p.line, p.reason) for p in problems] == [
        (1, BAD_ROW),
        (2, BAD_ROW),
        (3, BAD_ROW),
        (4, BAD_LABEL),
        (5, BAD_LABEL),
        (6, BAD_ROW),
        (7, BAD_ROW),
        (8, PATH_NOT_ALLOWED),
        (9, BAD_ROW),
    ]


# ---- folder ------------------------------------------------------------------------------


def test_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for rel in ["cat/1.png", "cat/more/2.png", "dog/3.jpg", "top.png", ".hidden/x.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "dog" / ".DS_Store").write_bytes(b"x")
    recs, problems = read("folder", root)
    assert problems == []
    assert [(Path(r.source).relative_to(root).as_posix(), r.labels) for r in recs] == [
        ("top.png", ()),
        ("cat/1.png", ("cat",)),
        ("cat/more/2.png", ("cat",)),
        ("dog/3.jpg", ("dog",)),
    ]
    assert all(r.line is None and r.ml_use is None for r in recs)


def test_folder_links_and_bad_label_folders(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    os.symlink(tmp_path / "outside.png", root / "cat" / "escape.png")
    os.symlink(root / "cat" / "a.png", root / "cat" / "inside.png")
    os.symlink(tmp_path, root / "linkdir")
    (root / "bad\x01name").mkdir()
    (root / "bad\x01name" / "b.png").write_bytes(b"x")
    recs, problems = read("folder", root)
    assert [Path(r.source).name for r in recs] == ["a.png", "inside.png"]
    assert sorted((Path(p.source).name, p.reason) for p in problems) == [
        ("bad\x01name", BAD_LABEL),
        ("escape.png", PATH_NOT_ALLOWED),
        ("linkdir", PATH_NOT_ALLOWED),
    ]
    recs, problems = read("folder", root, roots=(str(tmp_path),))
    assert [Path(r.source).name for r in recs] == ["a.png", "escape.png", "inside.png"]


def test_folder_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no image files"):
        read("folder", tmp_path / "empty")
    with pytest.raises(DatasetError, match="not a folder"):
        read("folder", tmp_path / "missing")


# ---- detection ---------------------------------------------------------------------------


def test_detect_format(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "a.csv").write_text("a.png,cat\n")
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "noext").write_text('  {"imageGcsUri": "a.png"}\n')
    (tmp_path / "list.txt").write_text("a.png,cat\n")
    assert detect_format(str(tmp_path / "dir")) == "folder"
    assert detect_format(str(tmp_path / "a.csv")) == "csv"
    assert detect_format(str(tmp_path / "a.jsonl")) == "jsonl"
    assert detect_format(str(tmp_path / "noext")) == "jsonl"
    assert detect_format(str(tmp_path / "list.txt")) == "csv"
    assert detect_format("gs://bucket/x.jsonl") == "jsonl"
    assert detect_format("s3://bucket/x.CSV") == "csv"


def test_detect_format_not_a_dataset(tmp_path: Path, image_bytes) -> None:
    (tmp_path / "img.png").write_bytes(image_bytes())
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DatasetError, match="no such file or folder"):
        detect_format(str(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="not a dataset"):
        detect_format(str(tmp_path / "img.png"))
    with pytest.raises(DatasetError, match="empty"):
        detect_format(str(tmp_path / "empty.txt"))
    with pytest.raises(DatasetError, match="--format"):
        detect_format("s3://bucket/data")


# ---- contract: every reader, the same dataset --------------------------------------------


def _same_source(fmt: str, root: Path) -> Path:
    """The same three images (cat, cat, dog) in each layout."""
    files = {"cat/a.png": "cat", "cat/b.png": "cat", "dog/c.png": "dog"}
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    if fmt == "folder":
        return root
    if fmt == "csv":
        (root / "d.csv").write_text("".join(f"{rel},{lab}\n" for rel, lab in files.items()))
        return root / "d.csv"
    rows = [
        {"imageGcsUri": rel, "classificationAnnotation": {"displayName": lab}}
        for rel, lab in files.items()
    ]
    return _jsonl(root / "d.jsonl", rows)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_contract(tmp_path: Path, fmt: str) -> None:
    source = _same_source(fmt, tmp_path)
    assert detect_format(str(source)) == fmt
    recs, problems = read(fmt, source)
    assert problems == []
    assert all(isinstance(r.metadata, dict) and isinstance(r.labels, tuple) for r in recs)
    got = sorted((Path(r.uri).relative_to(tmp_path.resolve()).as_posix(), r.labels) for r in recs)
    assert got == [("cat/a.png", ("cat",)), ("cat/b.png", ("cat",)), ("dog/c.png", ("dog",))]
