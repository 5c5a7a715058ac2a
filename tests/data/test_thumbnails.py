"""Gallery thumbnails: made once from the blob, then read from the cache; clear errors."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from autovision.data import thumbnails as T
from autovision.data.dataset import Item
from autovision.data.gallery import item_thumbnail
from autovision.errors import DatasetError, ImageDecodeError
from autovision.security import crypto


def encoded(w: int, h: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def item(item_id: int, sha: str, source: str) -> Item:
    return Item(
        id=item_id, sha256=sha, source=source, labels=("a",), split="train", width=1, height=1,
        format="PNG",
    )  # fmt: skip


def test_made_once_then_read_without_decoding(workspace, monkeypatch) -> None:
    sha = workspace.blobs.put(encoded(640, 320, "JPEG"))
    calls = []
    real = T.decode_image
    monkeypatch.setattr(T, "decode_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = T.thumbnail(workspace, sha)
    assert len(calls) == 1
    path = T.thumbnail_path(workspace, sha)
    assert path.is_file() and path.relative_to(workspace.cache_dir).parts[:3] == (
        "thumbs",
        "256",
        sha[:2],
    )
    monkeypatch.setattr(workspace.blobs, "get", lambda *a: pytest.fail("blob read again"))
    assert T.thumbnail(workspace, sha) == first
    assert len(calls) == 1  # the second call did not decode
    img = Image.open(io.BytesIO(first))
    assert img.format == T.FORMAT and img.size == (256, 128)
    assert f"image/{'webp' if T.FORMAT == 'WEBP' else 'jpeg'}" == T.MEDIA_TYPE


def test_small_images_are_not_enlarged_and_sizes_are_separate(workspace) -> None:
    sha = workspace.blobs.put(encoded(40, 30))
    assert Image.open(io.BytesIO(T.thumbnail(workspace, sha))).size == (40, 30)
    big = workspace.blobs.put(encoded(300, 300))
    assert Image.open(io.BytesIO(T.thumbnail(workspace, big, 64))).size == (64, 64)
    assert Image.open(io.BytesIO(T.thumbnail(workspace, big))).size == (256, 256)


def test_corrupt_blob_is_a_clear_error_naming_the_item(workspace) -> None:
    good = workspace.blobs.put(encoded(20, 20))
    bad = workspace.blobs.put(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    workspace.create_version(
        "pets", [item(1, good, "ok.png"), item(2, bad, "cats/broken.png")], multi_label=False
    )
    with pytest.raises(ImageDecodeError, match=r"item 2 \(cats/broken.png\) of pets@1"):
        item_thumbnail(workspace, "pets", 2)
    assert not T.thumbnail_path(workspace, bad).exists()  # nothing half-made was kept
    assert item_thumbnail(workspace, "pets", 1)
    with pytest.raises(DatasetError, match="pets@1 has no image with id 3"):
        item_thumbnail(workspace, "pets", 3)
    missing = "ab" * 32
    with pytest.raises(DatasetError, match=f"image {missing}: its stored image .* missing"):
        T.thumbnail(workspace, missing)


@pytest.mark.parametrize("sha", ["../../etc/passwd", "AB" * 32, "ab" * 31, "", None])
def test_only_sha256_ids_and_sane_sizes(workspace, sha) -> None:
    with pytest.raises(DatasetError, match="invalid image id"):
        T.thumbnail(workspace, sha)


@pytest.mark.parametrize("size", [0, 8, 5000, 1.5, "256"])
def test_sizes_are_checked(workspace, size) -> None:
    sha = workspace.blobs.put(encoded(20, 20))
    with pytest.raises(DatasetError, match="invalid thumbnail size"):
        T.thumbnail(workspace, sha, size)


def test_encrypted_workspace_keeps_thumbnails_encrypted(tmp_path, monkeypatch) -> None:
    from autovision.workspace import Workspace

    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    ws = Workspace(tmp_path / "ws")
    sha = ws.blobs.put(encoded(50, 50))
    thumb = T.thumbnail(ws, sha)
    assert crypto.is_encrypted(T.thumbnail_path(ws, sha).read_bytes())
    assert Image.open(io.BytesIO(thumb)).size == (50, 50)
    assert T.thumbnail(ws, sha) == thumb


def test_concurrent_makers_all_get_a_whole_thumbnail(workspace) -> None:
    sha = workspace.blobs.put(encoded(400, 400, "JPEG"))
    out: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: out.append(T.thumbnail(workspace, sha))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 6
    for data in out:
        assert Image.open(io.BytesIO(data)).size == (256, 256)
    folder = T.thumbnail_path(workspace, sha).parent
    assert [p.name for p in folder.iterdir()] == [T.thumbnail_path(workspace, sha).name]
