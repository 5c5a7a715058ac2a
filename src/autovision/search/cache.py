"""Caches that keep epochs cheap: decoded, resized images and frozen-backbone embeddings.

Both are plain ``.npy`` arrays under ``ws.cache_dir`` (no pickle; read back with
``allow_pickle=False`` and memory-mapped). Images are keyed by the content of the items
(ids + sha256), the size, the resize rule and the interpolation; embeddings additionally by
the backbone (and base model). An embedding array is filled incrementally in item order, so a
search that first embeds a subsample of the training images extends the same file later.

They are derived data kept in plaintext (memory-mapped arrays): with encryption at rest on,
:func:`clear_if_encrypted` removes them when a training run finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from autovision.data.dataset import Item
from autovision.errors import ImageDecodeError, TrainingError
from autovision.models.preprocess import Preprocessing, resize_image

PARALLEL_MIN_ITEMS = 512  # below this, decode in-process (no worker start-up)
_CHUNK = 256


def items_key(items: Sequence[Item]) -> str:
    """Content hash of an ordered item list (ids and image hashes)."""
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it.id}:{it.sha256};".encode())
    return h.hexdigest()


def _spec_tag(spec: Preprocessing) -> str:
    return f"{spec.input_size}-{spec.resize}-{spec.interpolation}"


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def clear_if_encrypted(ws: Any) -> bool:
    """Remove the decoded-image and embedding caches when an encryption key is configured, so
    no plaintext copy of the images outlives the run that needed it; whether it did."""
    import shutil

    from autovision.security.crypto import configured_key

    if configured_key() is None:
        return False
    for sub in ("images", "embeddings"):
        shutil.rmtree(Path(ws.cache_dir) / sub, ignore_errors=True)
    return True


# ---- decoded images -----------------------------------------------------------------------


def _decode_one(data: bytes, spec: Preprocessing, what: str) -> np.ndarray:
    from autovision.data.decode import decode_image

    try:
        s = spec.input_size
        img = decode_image(data, draft=(s, s)).image
    except ImageDecodeError as exc:
        raise TrainingError(f"{what}: cannot decode the stored image ({exc.message})") from None
    return resize_image(img, spec)


def _decode_chunk(blob_url: str, shas: list[str], start: int, out: str, spec: dict) -> int:
    """Worker: decode ``shas`` into rows ``start...`` of the memory-mapped ``out`` array."""
    from autovision.workspace.blobs import BlobStore

    store = BlobStore(blob_url)
    pp = Preprocessing.from_dict(spec)
    arr = np.load(out, mmap_mode="r+", allow_pickle=False)
    for i, sha in enumerate(shas):
        arr[start + i] = _decode_one(store.get(sha), pp, f"image {sha[:12]}")
    arr.flush()
    return len(shas)


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def pixels_path(ws: Any, items: Sequence[Item], spec: Preprocessing) -> Path:
    return Path(ws.cache_dir) / "images" / f"{items_key(items)[:24]}-{_spec_tag(spec)}.npy"


def load_pixels(
    ws: Any,
    items: Sequence[Item],
    spec: Preprocessing,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """uint8 [N, S, S, 3] pixels of ``items`` (resized by ``spec``), cached on disk.

    Only the given items are ever decoded (the search never passes test items).
    """
    path = pixels_path(ws, items, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return np.load(path, mmap_mode="r", allow_pickle=False)
    s = spec.input_size
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(items), s, s, 3))
    try:
        if len(items) < PARALLEL_MIN_ITEMS or _workers() == 1:
            for i, it in enumerate(items):
                arr[i] = _decode_one(ws.image_bytes(it), spec, f"item {it.id} ({it.source})")
                if on_progress and (i + 1) % 256 == 0:
                    on_progress(i + 1, len(items))
            arr.flush()
            del arr
        else:
            arr.flush()
            del arr
            _decode_parallel(ws.blobs.url, [it.sha256 for it in items], tmp, spec, on_progress)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _decode_parallel(
    blob_url: str,
    shas: list[str],
    out: Path,
    spec: Preprocessing,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    done = 0
    with ProcessPoolExecutor(max_workers=_workers(), mp_context=ctx) as pool:
        futures = [
            pool.submit(_decode_chunk, blob_url, shas[i : i + _CHUNK], i, str(out), spec.to_dict())
            for i in range(0, len(shas), _CHUNK)
        ]
        for fut in futures:
            done += fut.result()
            if on_progress:
                on_progress(done, len(shas))


# ---- frozen-backbone embeddings ---------------------------------------------------------------


def _row_key(it: Item) -> str:
    return f"{it.id}:{it.sha256}"


def _reuse_rows(path: Path, described: dict[str, Any], arr: np.ndarray) -> int:
    """Fill the leading rows of a new cache ``arr`` from the other cache files of the same
    model key, preprocessing, shape and dtype that hold those items (by id and image hash):
    a training run on a subset of the items (``train --exclude-issues``, a new version with
    a few images more or less) embeds only what no run embedded before. The cache is filled
    in order, so the rows reused are the longest run from the first that some file has; the
    number of them."""
    found: dict[str, tuple[Path, int]] = {}
    suffix = "-" + described["spec"] + ".items.json"
    for side in sorted(path.parent.glob("*" + suffix)):
        npy = side.with_name(side.name.removesuffix(".items.json") + ".npy")
        if npy == path or not npy.exists():
            continue
        try:
            other = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        same = ("model_key", "spec", "shape", "dtype")
        if any(other.get(k) != described[k] for k in same):
            continue
        done = EmbeddingCache.rows_done(npy)
        for row, key in enumerate(other.get("items", [])[:done]):
            found.setdefault(key, (npy, row))
    n = 0
    for key in described["items"]:
        if key not in found:
            break
        n += 1
    if n == 0:
        return 0
    sources: dict[Path, list[tuple[int, int]]] = {}
    for dst, key in enumerate(described["items"][:n]):
        src_path, src_row = found[key]
        sources.setdefault(src_path, []).append((dst, src_row))
    for src_path, pairs in sources.items():
        src = np.load(src_path, mmap_mode="r", allow_pickle=False)
        dst_rows, src_rows = (np.array(v, dtype=np.int64) for v in zip(*pairs, strict=True))
        arr[dst_rows] = src[src_rows]
        del src
    return n


class EmbeddingCache:
    """Float32 [N, D] embeddings of ``items`` (in the given order) by one frozen model,
    filled incrementally: ``get(n)`` returns the first ``n`` rows, computing the missing ones.
    ``dim`` may be a shape (``[N, C, H, W]`` activation maps) and ``dtype`` float16.
    """

    def __init__(
        self,
        ws: Any,
        items: Sequence[Item],
        spec: Preprocessing,
        model_key: str,
        dim: int | tuple[int, ...],
        dtype: Any = np.float32,
    ) -> None:
        self.path = self.path_for(ws, items, spec, model_key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta_path = self.path.with_suffix(".json")
        self.n_items = len(items)
        self.dim = dim
        self.reused = 0  # rows copied from another cache of the same model when created
        if not self.path.exists():
            shape = (len(items), *((dim,) if isinstance(dim, int) else dim))
            tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.tmp.npy")
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            keys = [_row_key(it) for it in items]
            described = {"model_key": model_key, "spec": _spec_tag(spec), "items": keys}
            described |= {"shape": list(shape[1:]), "dtype": np.dtype(dtype).str}
            self.reused = _reuse_rows(self.path, described, arr)
            arr.flush()
            del arr
            _atomic_json(self.items_path(self.path), described)
            os.replace(tmp, self.path)
            _atomic_json(self.meta_path, {"done": self.reused})

    @staticmethod
    def path_for(ws: Any, items: Sequence[Item], spec: Preprocessing, model_key: str) -> Path:
        tag = hashlib.sha256(f"{model_key}|{items_key(items)}".encode()).hexdigest()[:24]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_key)[:40]
        return Path(ws.cache_dir) / "embeddings" / f"{safe}-{tag}-{_spec_tag(spec)}.npy"

    @staticmethod
    def items_path(path: Path) -> Path:
        """The sidecar that says which model, preprocessing and items a cache file holds."""
        return path.with_name(path.stem + ".items.json")

    @staticmethod
    def rows_done(path: Path) -> int:
        """Rows already computed in the cache file ``path`` (0 when there is none)."""
        try:
            return int(json.loads(path.with_suffix(".json").read_text())["done"])
        except (OSError, ValueError, KeyError):
            return 0

    @property
    def done(self) -> int:
        return self.rows_done(self.path)

    def get(
        self,
        n: int,
        compute: Callable[[int, int], np.ndarray],
        *,
        batch: int = 256,
        deadline: float | None = None,
    ) -> np.ndarray:
        """First ``n`` rows; ``compute(start, stop)`` embeds the missing rows in batches.

        Progress is recorded after each batch, so an interrupted run keeps what it computed.
        Raises :class:`TimeoutError` when ``deadline`` (``time.monotonic``) passes.
        """
        n = min(n, self.n_items)
        start = self.done
        if start < n:
            arr = np.load(self.path, mmap_mode="r+", allow_pickle=False)
            while start < n:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("embedding ran past the deadline")
                stop = min(n, start + batch)
                arr[start:stop] = compute(start, stop)
                arr.flush()
                _atomic_json(self.meta_path, {"done": stop})
                start = stop
            del arr
        return np.load(self.path, mmap_mode="r", allow_pickle=False)[:n]
