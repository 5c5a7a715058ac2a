"""predict_batch_ray and ``autovision predict --ray`` on a two-node Ray cluster: the same
lines as the local pipeline, bad images in the errors file, resume after an interruption,
a bucket (a local S3 server) in and out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.data import problems as P
from autovision.predict import predict_batch
from autovision.predict.raydata import predict_batch_ray
from tests._ray import ray_cluster
from tests._s3 import s3_server

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(s3):
    """Started inside the S3 server's settings: its workers see the endpoint and keys."""
    with ray_cluster() as c:
        yield c


def _rows(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_source = {r["instance"]["content"]: r for r in rows}
    assert len(by_source) == len(rows), "a source was written twice"
    return by_source


def _inputs(image_dir) -> list[Path]:
    root = image_dir(n=12, broken=True)
    (root / "list.csv").write_text("path\nred/absent.png\n\n,\n")
    return [root, root / "list.csv"]


@pytest.mark.parametrize(
    ("package", "options"),
    [("package_dir", {}), ("multilabel_package_dir", {"max_predictions": 2})],
)
def test_same_lines_as_local_pipeline(
    cluster, request, package: str, options: dict, image_dir, tmp_path: Path
) -> None:
    pkg = request.getfixturevalue(package)
    inputs = _inputs(image_dir)
    local = predict_batch(pkg, inputs, tmp_path / "local.jsonl", batch_size=5, **options)
    on_ray = predict_batch_ray(
        pkg, inputs, tmp_path / "ray.jsonl", address=cluster.address, batch_size=5, **options
    )
    assert (on_ray.predicted, on_ray.failed, on_ray.total) == (12, 5, 17)
    assert (on_ray.predicted, on_ray.failed, on_ray.total) == (
        local.predicted,
        local.failed,
        local.total,
    )
    assert on_ray.failures == local.failures
    want, got = _rows(local.output), _rows(on_ray.output)
    assert got.keys() == want.keys()
    for source, row in got.items():
        a, b = row["prediction"], want[source]["prediction"]
        assert (a["ids"], a["displayNames"]) == (b["ids"], b["displayNames"]), source
        assert a["confidences"] == pytest.approx(b["confidences"], abs=1e-6), source
    assert _rows(on_ray.errors) == _rows(local.errors)  # same reasons and messages
    reasons = {Path(s).name: r["error"]["reason"] for s, r in _rows(on_ray.errors).items()}
    assert reasons == {
        "truncated.jpg": P.UNREADABLE,
        "text.png": P.UNSUPPORTED_FORMAT,
        "empty.jpg": P.EMPTY_FILE,
        "absent.png": P.MISSING_FILE,
        "list.csv:4": P.BAD_ROW,
    }


def test_resume_after_interruption(cluster, package_dir: Path, image_dir, tmp_path: Path) -> None:
    root = image_dir(n=40, broken=True)
    out = tmp_path / "preds.jsonl"
    seen: list[int] = []

    def stop_after_first_block(done: int, total: int | None) -> None:
        seen.append(done)
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_batch_ray(
            package_dir,
            root,
            out,
            address=cluster.address,
            batch_size=4,
            progress=stop_after_first_block,
        )
    first = _rows(out)
    assert 0 < len(first) < 40
    with open(out, "a") as fh:  # what a kill in the middle of a write leaves
        fh.write('{"instance": {"content": "')

    result = predict_batch_ray(
        package_dir, root, out, address=cluster.address, batch_size=4, resume=True
    )
    assert result.skipped == len(first) + len(_rows(result.errors)) - result.failed
    assert result.skipped + result.predicted + result.failed == result.total == 43
    done = _rows(out)  # every source once, the truncated line gone
    assert len(done) == 40 and first.keys() <= done.keys()
    assert len(_rows(result.errors)) == 3


def test_cli_predict_on_ray(cluster, model_ws, image_dir, tmp_path: Path) -> None:
    root = image_dir(n=6, broken=True)
    out = tmp_path / "preds.jsonl"
    args = ["predict", "m-test", str(root), "-o", str(out), "--ray", cluster.address]
    res = runner.invoke(app, [*args, "--workspace", str(model_ws.root), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["predicted"], summary["failed"]) == (6, 3)
    assert len(_rows(out)) == 6 and len(_rows(Path(summary["errors"]))) == 3


def test_cli_ray_options_need_ray(model_ws, tmp_path: Path) -> None:
    ws = ["--workspace", str(model_ws.root)]
    out = ["-o", str(tmp_path / "o.jsonl")]
    res = runner.invoke(app, ["predict", "m-test", str(tmp_path), *out, "--actors", "2", *ws])
    assert res.exit_code == 1 and "--actors goes with --ray" in res.output
    res = runner.invoke(
        app, ["predict", "m-test", str(tmp_path), *out, "--ray", "auto", "--workers", "2", *ws]
    )
    assert res.exit_code == 1 and "with --ray use --actors" in res.output


def test_bucket_in_and_out(cluster, s3, package_dir: Path, image_dir) -> None:
    root = image_dir(n=6, broken=True, name="bucket")
    client = s3.client()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"images/{path.relative_to(root).as_posix()}"
        client.put_object(Bucket=s3.bucket, Key=key, Body=path.read_bytes())
    src = s3.url("images") + "/"
    local = predict_batch(package_dir, src, s3.url("local") + "/", batch_size=4)
    on_ray = predict_batch_ray(
        package_dir, src, s3.url("ray") + "/", address=cluster.address, batch_size=4
    )
    assert on_ray.output == s3.url("ray", "predictions.jsonl")
    assert (on_ray.predicted, on_ray.failed) == (local.predicted, local.failed) == (6, 3)

    def rows(target: str) -> dict[str, dict]:
        fs_rows = {}
        for o in client.list_objects_v2(Bucket=s3.bucket, Prefix=target).get("Contents", []):
            body = client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read().decode()
            for line in body.splitlines():
                row = json.loads(line)
                fs_rows[row["instance"]["content"]] = row
        return fs_rows

    want, got = rows("local/predictions-"), rows("ray/predictions-")
    assert got.keys() == want.keys() and all(k.startswith(src) for k in got)
    for source, row in got.items():
        a, b = row["prediction"], want[source]["prediction"]
        assert a["ids"] == b["ids"], source
        assert a["confidences"] == pytest.approx(b["confidences"], abs=1e-6), source
    assert rows("ray/errors-") == rows("local/errors-")
    again = predict_batch_ray(
        package_dir, src, s3.url("ray") + "/", address=cluster.address, resume=True
    )
    assert (again.skipped, again.predicted, again.failed) == (9, 0, 0)
