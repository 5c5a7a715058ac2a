"""Input expansion: folders, globs, CSV, JSONL, single files and fsspec URLs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import pytest

from autovision.data.problems import BAD_ROW, MISSING_FILE, Problem
from autovision.predict import count_sources, expand_inputs


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_is_recursive_sorted_and_keeps_only_images(tmp_path: Path) -> None:
    for rel in ("b/2.png", "a/1.JPG", "a/sub/3.webp", "c.jpeg", "notes.txt", ".hidden/4.png"):
        _touch(tmp_path / "in" / rel)
    _touch(tmp_path / "in" / ".5.png")
    got = list(expand_inputs(tmp_path / "in"))
    rel = [os.path.relpath(p, tmp_path / "in") for p in got]
    assert rel == ["a/1.JPG", "a/sub/3.webp", "b/2.png", "c.jpeg"]
    assert count_sources([tmp_path / "in"]) == 4


def test_glob_and_single_files(tmp_path: Path) -> None:
    for rel in ("x/1.png", "x/2.png", "x/y/3.png", "x/4.jpg"):
        _touch(tmp_path / rel)
    pattern = str(tmp_path / "x" / "**" / "*.png")
    got = list(expand_inputs([pattern, tmp_path / "x" / "4.jpg", tmp_path / "nope.png"]))
    assert [Path(p).name for p in got] == ["1.png", "2.png", "3.png", "4.jpg", "nope.png"]


def test_csv_first_column_relative_to_the_file_and_ml_use(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "a.csv").write_text(
        f"img/1.png,cat\nTEST,img/2.png,dog\n\n{tmp_path / 'abs.png'}\ns3://bucket/k.jpg\n,\n"
    )
    got = list(expand_inputs(lists / "a.csv"))
    assert got[:4] == [
        str(lists / "img" / "1.png"),
        str(lists / "img" / "2.png"),
        str(tmp_path / "abs.png"),
        "s3://bucket/k.jpg",
    ]
    assert isinstance(got[4], Problem) and got[4].reason == BAD_ROW and got[4].line == 6


@pytest.mark.parametrize("column", ["path", "imageGcsUri", "image_path"])
def test_csv_header_names_the_column(tmp_path: Path, column: str) -> None:
    (tmp_path / "l.csv").write_text(f"id,{column},label\n1,a.png,x\n2,../b.png,y\n")
    got = list(expand_inputs(str(tmp_path / "l.csv")))
    assert got == [str(tmp_path / "a.png"), str(tmp_path.parent / "b.png")]


def test_jsonl_keys_strings_and_bad_lines(tmp_path: Path) -> None:
    rows = [
        {"content": "a.png", "mimeType": "image/png"},
        {"imageGcsUri": "gs://b/c.jpg"},
        {"path": "sub/d.png"},
        "e.png",
        {"instance": {"content": "f.png"}, "prediction": {}},
        {"label": "no path"},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n{not json\n"
    (tmp_path / "in.jsonl").write_text(text)
    got = list(expand_inputs(tmp_path / "in.jsonl"))
    paths = [g for g in got if isinstance(g, str)]
    assert paths == [
        str(tmp_path / "a.png"),
        "gs://b/c.jpg",
        str(tmp_path / "sub" / "d.png"),
        str(tmp_path / "e.png"),
        str(tmp_path / "f.png"),
    ]
    problems = [g for g in got if isinstance(g, Problem)]
    assert [(p.reason, p.line) for p in problems] == [(BAD_ROW, 6), (BAD_ROW, 7)]
    assert problems[0].source.endswith("in.jsonl:6")


def test_missing_list_file_is_one_problem(tmp_path: Path) -> None:
    [problem] = list(expand_inputs(tmp_path / "absent.csv"))
    assert isinstance(problem, Problem) and problem.reason == MISSING_FILE


def test_fsspec_urls_folder_glob_and_list() -> None:
    fs = fsspec.filesystem("memory")
    for name in ("a/1.png", "a/2.jpg", "a/b/3.png", "a/readme.md"):
        fs.pipe(f"/predict-test/{name}", b"x")
    fs.pipe("/predict-test/list.jsonl", b'{"content": "a/1.png"}\n{"content": "/abs/z.png"}\n')
    try:
        folder = list(expand_inputs("memory://predict-test/a"))
        assert folder == [
            "memory:///predict-test/a/1.png",
            "memory:///predict-test/a/2.jpg",
            "memory:///predict-test/a/b/3.png",
        ]
        assert list(expand_inputs("memory://predict-test/a/*.png")) == [
            "memory:///predict-test/a/1.png"
        ]
        listed = list(expand_inputs("memory://predict-test/list.jsonl"))
        assert listed[1] == "/abs/z.png"
        assert listed[0].endswith("predict-test/a/1.png") and listed[0].startswith("memory://")
    finally:
        fs.rm("/predict-test", recursive=True)
