"""Import from CSV/JSONL files in S3 (a local moto server) whose rows name ``s3://`` objects,
in the cloud AutoML layouts, through the configured endpoint."""

from __future__ import annotations

import io
import json

import pytest

from autovision.data.importer import ImportFailed, import_dataset
from autovision.errors import StorageError
from tests._s3 import s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def uploaded(s3):
    """Six PNGs under ``s3://B/imgs/{cat,dog}/``; their URLs by label."""
    from PIL import Image

    from tests.conftest import _pattern

    client, urls = s3.client(), {"cat": [], "dog": []}
    for li, label in enumerate(urls):
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(_pattern(li, 16, li * 10 + i)).save(buf, format="PNG")
            key = f"imgs/{label}/{i}.png"
            client.put_object(Bucket=s3.bucket, Key=key, Body=buf.getvalue())
            urls[label].append(s3.url(key))
    return urls


def test_csv_in_the_bucket_with_s3_rows(s3, uploaded, workspace) -> None:
    rows = [f"TRAIN,{u},{label}" for label, us in uploaded.items() for u in us]
    rows += ["TEST,imgs/cat/0.png,cat", f"TRAIN,{s3.url('imgs/none.png')},cat"]
    s3.client().put_object(Bucket=s3.bucket, Key="lists/d.csv", Body="\n".join(rows).encode())
    result = import_dataset(workspace, "pets", s3.url("lists/d.csv"), allow_urls=True)
    assert result.to_dict()["images"] == 6  # imgs/cat/0.png twice: one image
    assert [p["reason"] for p in result.problems].count("missing_file") >= 1
    sources = {it.source for it in result.version.items}
    assert uploaded["dog"][0] in sources
    assert all(workspace.load_image(it).size == (16, 16) for it in result.version.items)


def test_jsonl_cloud_layout_with_s3_uris(s3, uploaded, tmp_path, workspace) -> None:
    lines = [
        json.dumps({"imageGcsUri": u, "classificationAnnotation": {"displayName": label}})
        for label, us in uploaded.items()
        for u in us
    ]
    local = tmp_path / "d.jsonl"
    local.write_text("\n".join(lines) + "\n")
    result = import_dataset(workspace, "pets", local, allow_urls=True)
    assert result.to_dict()["images"] == 6
    assert sorted(result.version.labels) == ["cat", "dog"]


def test_s3_rows_need_allow_urls(s3, uploaded, tmp_path, workspace) -> None:
    local = tmp_path / "d.csv"
    local.write_text(f"{uploaded['cat'][0]},cat\n{uploaded['dog'][0]},dog\n")
    with pytest.raises(ImportFailed, match="url_not_allowed.*without --allow-urls"):
        import_dataset(workspace, "pets", local)


def test_a_list_in_a_missing_bucket_is_one_line(s3, workspace) -> None:
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-z/d\.csv: the bucket"):
        import_dataset(workspace, "pets", "s3://no-such-bucket-z/d.csv")


def test_a_folder_per_label_in_the_bucket(s3, uploaded, workspace) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key="imgs/.hidden/x.png", Body=b"not read")
    result = import_dataset(workspace, "pets", s3.url("imgs") + "/")
    assert result.to_dict()["images"] == 6
    assert sorted(result.version.labels) == ["cat", "dog"]
    assert {it.source for it in result.version.items} == {u for us in uploaded.values() for u in us}


def test_an_empty_prefix_says_so(s3, workspace) -> None:
    with pytest.raises(Exception, match=r"s3://.*/nothing/: no image files"):
        import_dataset(workspace, "pets", s3.url("nothing") + "/")
