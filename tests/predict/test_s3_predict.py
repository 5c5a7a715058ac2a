"""Batch prediction reading from and writing to S3 (a local moto server): a prefix of images
in, part objects of results and errors out, the same predictions as a local run, resume
after an interruption, list files in the bucket, and one-line errors for a missing bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.errors import StorageError
from autovision.predict import predict_batch, results
from tests._s3 import s3_server

runner = CliRunner()


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket_images(s3, image_dir):
    """The ``image_dir(n=6, broken=True)`` folder, also uploaded under ``s3://B/<name>/``."""

    def upload(name: str) -> tuple[Path, str]:
        root = image_dir(n=6, broken=True, name=name)
        client = s3.client()
        for path in sorted(root.rglob("*")):
            if path.is_file():
                key = f"{name}/{path.relative_to(root).as_posix()}"
                client.put_object(Bucket=s3.bucket, Key=key, Body=path.read_bytes())
        return root, s3.url(name) + "/"

    return upload


def _objects(s3, prefix: str) -> dict[str, bytes]:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"]: client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read() for o in listed
    }


def _lines(blobs: dict[str, bytes], stem: str) -> list[dict]:
    out = []
    for key in sorted(blobs):
        if key.rsplit("/", 1)[-1].startswith(f"{stem}-"):
            out.extend(json.loads(line) for line in blobs[key].decode().splitlines())
    return out


def _by_name(rows: list[dict], key: str = "prediction") -> dict[str, object]:
    return {
        r["instance"]["content"].rsplit("/", 2)[-2]
        + "/"
        + r["instance"]["content"].rsplit("/", 1)[-1]: r[key]
        for r in rows
    }


def test_prefix_in_parts_out_same_as_local(s3, bucket_images, package_dir, tmp_path) -> None:
    local, url = bucket_images("run1")
    result = predict_batch(package_dir, url, s3.url("out1") + "/", workers=1, batch_size=4)
    assert result.predicted == 6 and result.failed == 3
    assert result.output == s3.url("out1", "predictions.jsonl")
    blobs = _objects(s3, "out1/")
    assert set(blobs) == {"out1/predictions-00000.jsonl", "out1/errors-00000.jsonl"}
    remote = _lines(blobs, "predictions")
    assert all(r["instance"]["content"].startswith(url) for r in remote)
    here = tmp_path / "local.jsonl"
    predict_batch(package_dir, local, here, workers=1, batch_size=4)
    mine = [json.loads(line) for line in here.read_text().splitlines()]
    assert _by_name(remote) == _by_name(mine)
    reasons = sorted(e["error"]["reason"] for e in _lines(blobs, "errors"))
    assert reasons == ["empty_file", "unreadable", "unsupported_format"]


def test_resume_after_an_interruption(s3, bucket_images, package_dir, monkeypatch) -> None:
    _, url = bucket_images("run2")
    out = s3.url("out2", "preds.jsonl")
    monkeypatch.setattr(results, "PART_LINES", 1)
    calls = []

    def stop_after_first_batch(done: int, total: int | None) -> None:
        calls.append(done)
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_batch(
            package_dir, url, out, workers=1, batch_size=2, progress=stop_after_first_batch
        )
    first = _objects(s3, "out2/")
    done_first = len(_lines(first, "preds")) + len(_lines(first, "preds.errors"))
    assert 0 < done_first < 9
    result = predict_batch(package_dir, url, out, workers=1, batch_size=2, resume=True)
    assert result.skipped == done_first
    blobs = _objects(s3, "out2/")
    rows = _lines(blobs, "preds") + _lines(blobs, "preds.errors")
    sources = [r["instance"]["content"] for r in rows]
    assert len(sources) == 9 and len(set(sources)) == 9  # each image exactly once
    # without --resume the parts are rewritten (one each: under PART_LINES lines)
    monkeypatch.setattr(results, "PART_LINES", 10_000)
    predict_batch(package_dir, url, out, workers=1, batch_size=8)
    assert sorted(_objects(s3, "out2/")) == [
        "out2/preds-00000.jsonl",
        "out2/preds.errors-00000.jsonl",
    ]


def test_cli_reads_and_writes_the_bucket(s3, bucket_images, model_ws) -> None:
    _, url = bucket_images("run3")
    args = ["predict", "m-test", url, "--output", s3.url("out3") + "/"]
    res = runner.invoke(app, [*args, "--workspace", str(model_ws.root), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["output"] == s3.url("out3", "predictions.jsonl")
    assert summary["errors"] == s3.url("out3", "errors.jsonl")
    assert summary["predicted"] == 6
    res = runner.invoke(app, [*args, "--workspace", str(model_ws.root), "--resume", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["skipped"] == 9


def test_a_list_file_in_the_bucket(s3, bucket_images, package_dir) -> None:
    _, url = bucket_images("run4")
    rows = ["path", f"{url}red/0000.png", "green/0001.jpg", f"{url}missing.png"]
    s3.client().put_object(Bucket=s3.bucket, Key="run4/list.csv", Body="\n".join(rows).encode())
    out = s3.url("out4") + "/"
    result = predict_batch(package_dir, s3.url("run4", "list.csv"), out, workers=1)
    assert result.predicted == 2 and result.failed == 1
    blobs = _objects(s3, "out4/")
    got = sorted(r["instance"]["content"] for r in _lines(blobs, "predictions"))
    assert got == [f"{url}green/0001.jpg", f"{url}red/0000.png"]
    assert _lines(blobs, "errors")[0]["error"]["reason"] == "missing_file"


def test_a_missing_bucket_is_one_line(s3, bucket_images, package_dir, model_ws) -> None:
    _, url = bucket_images("run5")
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-x/out.*does not exist"):
        predict_batch(package_dir, url, "s3://no-such-bucket-x/out/", workers=1)
    res = runner.invoke(
        app,
        [
            "predict",
            "m-test",
            "s3://no-such-bucket-y/images/",
            "-o",
            s3.url("out5") + "/",
            "--workspace",
            str(model_ws.root),
        ],
    )
    assert res.exit_code == 1
    assert "s3://no-such-bucket-y/images/" in res.output and "does not exist" in res.output


def test_resume_after_a_kill(s3, package_dir, image_dir, tmp_path, monkeypatch) -> None:
    """SIGKILL ``autovision predict ... -o s3://`` once a part is in the bucket, then
    --resume: every image exactly once, only what the last part missed is redone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = image_dir(n=300, name="many")
    out = s3.url("killed") + "/"
    cmd = [sys.executable, "-m", "autovision.cli.main", "predict", str(package_dir), str(root)]
    cmd += ["-o", out, "--batch-size", "1", "--workers", "1", "--json"]
    env = {**os.environ, "AUTOVISION_WORKSPACE": str(tmp_path / "ws")}
    env["AUTOVISION_PREDICT_PART_LINES"] = "5"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _objects(s3, "killed/"):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    first = _lines(_objects(s3, "killed/"), "predictions")
    assert 0 < len(first) < 300
    res = runner.invoke(
        app,
        ["predict", str(package_dir), str(root), "-o", out, "--resume", "--json"]
        + ["--workspace", str(tmp_path / "ws")],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["skipped"] == len(first)
    done = [r["instance"]["content"] for r in _lines(_objects(s3, "killed/"), "predictions")]
    assert len(done) == 300 and len(set(done)) == 300
