"""``pipeline watch``: a file added to the watched folder triggers exactly one run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from autovision.pipelines import run_pipeline
from autovision.pipelines.sources import SourceLister, changes
from autovision.pipelines.store import list_runs
from autovision.pipelines.watch import watch


def _add_image(folder: Path, make_image, name: str) -> None:
    """Written beside, then renamed in: the poll never sees half a file."""
    tmp = folder.parent / f".{name}"
    make_image(0, 32, 99_999).save(tmp, format="PNG")
    os.replace(tmp, folder / name)


def _stages(source: Path) -> dict:
    return {"import": {"source": str(source)}, "check": {"gate": {"max_conflicting_labels": 0}}}


def test_listing_sees_added_changed_and_removed(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("2")
    (tmp_path / ".hidden").write_text("x")
    lister = SourceLister()
    first = lister.listing(str(tmp_path))
    assert set(first) == {"a.txt", "sub/b.txt"}
    (tmp_path / "a.txt").write_text("changed")
    (tmp_path / "c.txt").write_text("3")
    (tmp_path / "sub" / "b.txt").unlink()
    diff = changes(first, lister.listing(str(tmp_path)))
    assert diff == {"added": ["c.txt"], "changed": ["a.txt"], "removed": ["sub/b.txt"]}


def test_a_file_added_triggers_exactly_one_run(
    workspace, image_folder, make_image, write_pipeline
) -> None:
    source = image_folder(per_label=6)
    path = write_pipeline(_stages(source))
    assert run_pipeline(workspace, path).exit_code == 0

    stop, lines = threading.Event(), []
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            r=watch(workspace, str(path), every=0.05, stop=stop, log=lines.append)
        )
    )
    thread.start()
    try:
        end = time.monotonic() + 120
        while not any("unchanged since the last run" in x for x in lines):
            assert time.monotonic() < end, lines
            time.sleep(0.02)
        _add_image(source / "cat", make_image, "new.png")
        while not any(x.startswith("run prun-") for x in lines):
            assert time.monotonic() < end, lines
            time.sleep(0.02)
        polls = len([x for x in lines if x.startswith("poll")])
        while len([x for x in lines if x.startswith("poll")]) < polls + 5:
            assert time.monotonic() < end, lines
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=30)
    runs = result["r"].runs
    assert len(runs) == 1 and runs[0]["status"] == "done", lines
    assert any("1 added (cat/new.png): running" in x for x in lines)
    assert lines[-1].endswith("no change")
    stored = list_runs(workspace)
    assert len(stored) == 2 and stored[0]["trigger"] == "watch"
    assert stored[0]["stages"] == {"import": "done", "check": "done"}
    assert workspace.versions("leaves") == [1, 2]


def test_watch_cli_on_change_max_runs(workspace, image_folder, make_image, write_pipeline) -> None:
    source = image_folder(per_label=6)
    path = write_pipeline(_stages(source))
    cmd = [sys.executable, "-m", "autovision.cli.main", "pipeline", "watch", str(path)]
    cmd += ["--on-change", "--poll", "0.1", "--max-runs", "1", "-w", str(workspace.root)]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # never run before: the first poll runs it, and --max-runs 1 ends the watch
    assert proc.returncode == 0, err
    assert "never run: running" in out and "stopping after 1 run(s)" in out
    assert [r["trigger"] for r in list_runs(workspace)] == ["watch"]

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "watching" in first
        second = proc.stdout.readline()
        assert "unchanged since the last run" in second
        _add_image(source / "dog", make_image, "new.png")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "1 added (dog/new.png): running" in out
    assert len(list_runs(workspace)) == 2


def test_watch_cli_needs_a_schedule(workspace, tmp_path, write_pipeline) -> None:
    from typer.testing import CliRunner

    from autovision.cli.main import app

    path = write_pipeline(_stages(tmp_path))
    res = CliRunner().invoke(app, ["pipeline", "watch", str(path), "-w", str(workspace.root)])
    assert res.exit_code == 2 and "--every DURATION or --on-change" in res.output
