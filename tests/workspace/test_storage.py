"""storage_options / filesystem / open_url against a local S3 server (moto), and the one-line
errors for a missing bucket, missing credentials and an endpoint that does not answer."""

from __future__ import annotations

import pytest

from autovision.errors import StorageError
from autovision.workspace import storage
from tests._s3 import free_port, s3_server


def _read(url: str) -> bytes:
    with storage.open_url(url) as fh:
        return fh.read()


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def test_options_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AUTOVISION_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    assert storage.storage_options("s3://b/k") == {}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws-var:1")
    assert storage.storage_options("s3://b/k") == {"endpoint_url": "http://aws-var:1"}
    monkeypatch.setenv("AUTOVISION_S3_ENDPOINT", "http://ours:2")
    assert storage.storage_options("s3://b/k") == {"endpoint_url": "http://ours:2"}
    assert storage.storage_options("/tmp/x") == {}
    assert storage.storage_options("memory://x") == {}
    assert storage.is_remote("s3://b") and not storage.is_remote("/a/b")


def test_round_trip_through_the_endpoint(s3) -> None:
    fs, path = storage.filesystem(s3.url("dir/one.txt"))
    fs.pipe_file(path, b"hello")
    with storage.open_url(s3.url("dir/one.txt")) as fh:
        assert fh.read() == b"hello"
    with storage.open_url(s3.url("dir/two.txt"), "wb") as fh:
        fh.write(b"two")
    got = s3.client().get_object(Bucket=s3.bucket, Key="dir/two.txt")["Body"].read()
    assert got == b"two"


def test_missing_object_stays_file_not_found(s3) -> None:
    with pytest.raises(FileNotFoundError), storage.open_url(s3.url("nothing/here.png")) as fh:
        fh.read()


def test_missing_bucket_is_one_line(s3) -> None:
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-x/a\.png: the bucket"):
        _read("s3://no-such-bucket-x/a.png")


def test_missing_credentials_is_one_line(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var)
    s3fs.S3FileSystem.clear_instance_cache()
    url = s3.url("dir/one.txt")
    with pytest.raises(StorageError, match="no credentials") as info:
        _read(url)
    assert url in str(info.value) and "\n" not in str(info.value)
    s3fs.S3FileSystem.clear_instance_cache()


def test_unreachable_endpoint_is_one_line(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AUTOVISION_S3_ENDPOINT", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    url = s3.url("dir/one.txt")
    with pytest.raises(StorageError, match="cannot reach the object store") as info:
        _read(url)
    assert url in str(info.value) and dead in str(info.value)
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_workspace_on_a_missing_bucket_fails_in_one_line(
    s3, tmp_path, image_folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from autovision.cli.main import app

    monkeypatch.setenv("AUTOVISION_BLOB_URL", "s3://no-such-bucket-w/team")
    src = image_folder(labels=("a", "b"), per_label=2)
    res = CliRunner().invoke(
        app, ["dataset", "import", "pets", str(src), "--workspace", str(tmp_path / "ws")]
    )
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "s3://no-such-bucket-w/team" in lines[0], res.output
    assert "does not exist" in lines[0]
