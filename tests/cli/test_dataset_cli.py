"""``autovision dataset ...`` through Typer's CliRunner: one test per command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autovision.cli.main import app

runner = CliRunner()


def run(ws: Path, *args: str):
    return runner.invoke(app, ["dataset", *args, "--workspace", str(ws)])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(12):
        (src / ("cat" if i < 6 else "dog")).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
            src / ("cat" if i < 6 else "dog") / f"{i}.png"
        )
    return src


@pytest.fixture
def ws(tmp_path: Path, source: Path) -> Path:
    ws = tmp_path / "ws"
    assert run(ws, "import", "pets", str(source)).exit_code == 0
    return ws


def test_import(tmp_path: Path, source: Path) -> None:
    ws = tmp_path / "ws"
    res = run(ws, "import", "pets", str(source), "--split", "50/25/25", "--seed", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    checks = out.pop("checks_summary")  # its own test: test_import_ends_with_the_checks
    assert checks["exact_duplicates"] == 0 and checks["quality"] == {"small": 12}
    assert out == {
        "dataset": "pets",
        "version": 1,
        "images": 12,
        "labels": {"cat": 6, "dog": 6},
        "splits": {"train": 6, "validation": 3, "test": 3},
        "problems": [],
    }
    (source / "cat" / "broken.png").write_text("not an image")
    res = run(ws, "import", "pets", str(source), "--format", "folder")
    assert res.exit_code == 0, res.output
    assert "pets@2" in res.stdout and "unsupported_format" in res.stdout
    res = run(ws, "import", "pets", str(source), "--strict", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["problems"][0]["reason"] == "unsupported_format"
    res = run(ws, "import", "pets", str(source), "--strict")
    assert res.exit_code == 1 and "strict import refused" in res.stderr
    res = run(ws, "import", "pets", str(tmp_path / "nowhere"))
    assert res.exit_code == 1 and "no such file or folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run(ws, "import", "pets", str(source), "--split", "1/2")
    assert res.exit_code == 1 and "invalid split" in res.stderr
    assert json.loads(run(ws, "list", "--json").stdout)[0]["latest_version"] == 2


def _text(output: str) -> str:
    return " ".join(output.split())  # Rich wraps long lines at the terminal width


def test_import_ends_with_the_checks(tmp_path: Path, source: Path) -> None:
    ws = tmp_path / "ws"
    res = run(ws, "import", "pets", str(source))
    assert res.exit_code == 0, res.output
    assert _text(res.stdout).endswith(
        "Checks: no duplicates, conflicts or leaks found; 12 quality flags: "
        "see `autovision dataset show pets`"
    )
    (source / "dog" / "copy.png").write_bytes((source / "cat" / "0.png").read_bytes())
    (source / "cat" / "copy.png").write_bytes((source / "cat" / "1.png").read_bytes())
    res = run(ws, "import", "pets", str(source))
    assert res.exit_code == 0, res.output
    line = _text(res.stdout)
    assert "1 conflicting label" in line and "see `autovision dataset show pets`" in line
    assert "no duplicates" not in line
    out = json.loads(run(ws, "import", "pets", str(source), "--json").stdout)
    assert out["checks_summary"]["conflicting_labels"] == 1
    assert out["checks_summary"]["exact_duplicates"] >= 1  # 1.png and its copy at least
    assert out["checks_summary"]["quality"] == {"small": 14}


def test_import_of_an_exported_folder(ws: Path, tmp_path: Path) -> None:
    shown = json.loads(run(ws, "show", "pets", "--json").stdout)
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"out-{fmt}"
        assert run(ws, "export", "pets", str(out), "--format", fmt).exit_code == 0
        res = run(ws, "import", f"back-{fmt}", str(out), "--json")
        assert res.exit_code == 0, res.output
        back = json.loads(res.stdout)
        assert (back["labels"], back["splits"]) == (shown["labels"], shown["splits"])
    res = run(ws, "import", "folders", str(tmp_path / "out-csv"), "--format", "folder", "--json")
    assert json.loads(res.stdout)["labels"] == {"images": 12}


def test_import_flags_allow_root_urls_max_file_mb_and_zip(tmp_path: Path, source: Path) -> None:
    ws = tmp_path / "ws"
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.csv").write_text(
        f"{source / 'cat' / '0.png'},cat\n"
        f"file://{source / 'dog' / '6.png'},dog\n"
        "http://127.0.0.1:9/x.png,dog\n"
    )
    res = run(ws, "import", "x", str(data / "d.csv"), "--json")
    assert res.exit_code == 1
    assert [p["reason"] for p in json.loads(res.stdout)["problems"]] == [
        "path_not_allowed",
        "path_not_allowed",
        "url_not_allowed",
    ]
    res = run(ws, "import", "x", str(data / "d.csv"), "--allow-root", str(source), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["images"] == 2 and [p["reason"] for p in out["problems"]] == ["url_not_allowed"]
    args = ["import", "x", str(data / "d.csv"), "--allow-root", str(source), "--allow-urls"]
    res = run(ws, *args, "--json")
    problem = json.loads(res.stdout)["problems"][0]
    assert problem["reason"] == "url_not_allowed" and "loopback" in problem["message"]
    res = run(ws, *args, "--max-file-mb", "0.0001", "--json")
    assert res.exit_code == 1
    assert {p["reason"] for p in json.loads(res.stdout)["problems"]} == {
        "file_too_large",
        "url_not_allowed",
    }
    import zipfile

    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as zf:
        for f in sorted(source.rglob("*.png")):
            zf.write(f, f"pets/{f.relative_to(source)}")
        zf.writestr("../evil.png", b"x")
    res = run(ws, "import", "zipped", str(tmp_path / "pets.zip"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["images"] == 12 and out["labels"] == {"cat": 6, "dog": 6}
    assert [p["reason"] for p in out["problems"]] == ["path_not_allowed"]
    res = run(ws, "import", "--help")
    for flag in ("--allow-root", "--allow-urls", "--max-file-mb"):
        assert flag in res.stdout


def test_list(ws: Path) -> None:
    rows = json.loads(run(ws, "list", "--json").stdout)
    assert [(r["dataset"], r["latest_version"], r["images"]) for r in rows] == [("pets", 1, 12)]
    res = run(ws, "list")
    assert res.exit_code == 0 and "pets" in res.stdout and "single-label" in res.stdout


def test_show(ws: Path) -> None:
    res = run(ws, "show", "pets@1", "--json")
    assert res.exit_code == 0
    report = json.loads(res.stdout)
    assert report["dataset"] == "pets" and report["images"] == 12
    assert report["labels"] == {"cat": 6, "dog": 6}
    res = run(ws, "show", "pets", "--limit", "2")
    assert res.exit_code == 0 and "Images per label and split" in res.stdout
    res = run(ws, "show", "nope")
    assert res.exit_code == 1 and "no dataset named 'nope'" in res.stderr


def test_exclude(ws: Path) -> None:
    res = run(ws, "exclude", "pets", "--ids", "1,2", "--ids", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["version"] == 2 and out["parent_version"] == 1 and out["images"] == 9
    assert out["excluded"] == [1, 2, 3] and out["changed"]
    res = run(ws, "exclude", "pets", "--issues", "exact_duplicates")
    assert res.exit_code == 0 and "Nothing changed" in res.stdout
    assert run(ws, "exclude", "pets", "--ids", "x").exit_code == 2
    assert run(ws, "exclude", "pets").exit_code == 2
    res = run(ws, "exclude", "pets", "--ids", "500")
    assert res.exit_code == 1 and "no image with id 500" in res.stderr


def test_relabel(ws: Path, tmp_path: Path) -> None:
    f = tmp_path / "fix.csv"
    f.write_text("id,label\n1,dog\n")
    res = run(ws, "relabel", "pets", "--file", str(f))
    assert res.exit_code == 0, res.output
    assert "pets@2" in res.stdout and "relabeled 1 images" in res.stdout
    f.write_text("77,dog\n")
    res = run(ws, "relabel", "pets", "--file", str(f), "--json")
    assert res.exit_code == 1 and "line 1" in res.stderr and "77" in res.stderr


def test_export(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run(ws, "export", "pets@1", str(out), "--format", "jsonl", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["images"] == 12 and Path(summary["path"]).is_file()
    again = json.loads(run(ws, "import", "again", summary["path"], "--json").stdout)
    assert again["splits"] == json.loads(run(ws, "show", "pets", "--json").stdout)["splits"]
    res = run(ws, "export", "pets", str(tmp_path / "f"), "--format", "folder")
    assert res.exit_code == 0 and "Exported 12 images" in res.stdout
    res = run(ws, "export", "pets", str(out))
    assert res.exit_code == 1 and "new or empty" in res.stderr
