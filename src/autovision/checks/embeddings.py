"""Frozen pretrained embeddings of every image of a dataset version, for the data checks.

The train and validation rows live in the search's own embedding cache, under exactly the
key the search's first default ``linear`` trial uses (EfficientNet-Lite0, its default image
size, squashed; validation then training images in :attr:`TrainData.order`; see
:mod:`autovision.search.linear`), so an ``autovision train`` after a check finds them
computed, and a check after a train does too. The other items (test, unassigned, unlabeled)
go to a second cache with the same model key. ``flip=True`` embeds the mirrored images
(model key ``+ "|hflip"``), which the content near-duplicate check compares against.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autovision.data.dataset import DatasetVersion, Item
from autovision.errors import TrainingError

BACKBONE = "efficientnet_lite0"


@dataclass
class Embedded:
    """Embeddings of ``items`` (every item of the version, in the version's order): row ``i``
    of ``emb`` is ``items[i]``. ``key``: the model key of the caches; ``computed``: rows
    embedded by this call (the rest came from the caches)."""

    items: list[Item]
    emb: np.ndarray  # float32 [N, D]
    key: str
    seconds: float
    computed: int
    model: str = BACKBONE
    image_size: int = 0
    resize: str = "squash"

    @property
    def ids(self) -> list[int]:
        return [it.id for it in self.items]

    @property
    def cached(self) -> int:
        return len(self.items) - self.computed

    def info(self) -> dict[str, Any]:
        """What a check result records of its embeddings."""
        return {
            "model": self.model,
            "image_size": self.image_size,
            "resize": self.resize,
            "computed": self.computed,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
        }


def search_config(data: Any | None) -> Any:
    """The search's first default ``linear`` configuration of :data:`BACKBONE` for ``data``
    (a :class:`~autovision.search.prepare.TrainData`, or ``None`` when the version cannot
    be trained): the image sizes of ``AUTOVISION_SEARCH_SPACE`` apply, as in ``train``."""
    from autovision.search.space import SearchSpace, TrialConfig, _size_for, default_configs

    env = SearchSpace.from_env()
    sizes = env.sizes.get(BACKBONE)
    space = SearchSpace(
        backbones=(BACKBONE,), modes=("linear",), sizes={BACKBONE: sizes} if sizes else {}
    )
    if data is not None:
        cfgs = default_configs(space, data.profile, multi_label=data.multi_label, gpu=False)
        cfg = next(c for c in cfgs if c.mode == "linear" and c.backbone == BACKBONE)
        return cfg
    from autovision.models.registry import get_backbone_cfg

    native = get_backbone_cfg(BACKBONE).input_size
    size = _size_for(space.sizes_for(BACKBONE), native, prefer=native)
    return TrialConfig(BACKBONE, "linear", size, resize="squash")


def _device(device: Any) -> Any:
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: Any) -> Callable[[], contextlib.AbstractContextManager]:
    import torch

    if device.type != "cuda":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def dataset_embeddings(
    ws: Any,
    ds: DatasetVersion,
    *,
    flip: bool = False,
    deadline: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    device: Any = None,
) -> Embedded:
    """Embeddings of every item of ``ds`` (see the module docstring for which caches).

    ``deadline`` (``time.monotonic``): :class:`TimeoutError` when it passes while embedding
    (what was computed stays cached, so the next call goes on from there). ``progress(done,
    total)`` counts images over both caches.
    """
    import torch

    from autovision.search import cache
    from autovision.search.cache import EmbeddingCache
    from autovision.search.linear import fill_embeddings
    from autovision.search.modes import build_model, classifier_of, set_trainable
    from autovision.search.prepare import prepare_data
    from autovision.search.trainer import cpu_threads, preprocessing_for

    t0 = time.monotonic()
    try:
        data = prepare_data(ds, seed=0)
    except TrainingError:
        data = None  # cannot be trained: one cache over all items
    cfg = search_config(data)
    spec = preprocessing_for(cfg)
    key = cfg.backbone + ("|hflip" if flip else "")
    # (items, rows of their pixel array in cache order) of each cache
    if data is not None:
        first = data.items  # validation, then training items: the pixel cache's order
        n_val = len(data.val)
        rows = np.concatenate([np.arange(n_val), n_val + data.order]).astype(np.int64)
        in_first = {it.id for it in first}
        rest = sorted((it for it in ds.items if it.id not in in_first), key=lambda i: i.id)
        parts = [(first, rows), (rest, np.arange(len(rest)))]
    else:
        every = sorted(ds.items, key=lambda i: i.id)
        parts = [(every, np.arange(len(every)))]
    dev = _device(device)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads(sample=False))
    try:
        labels = ds.labels if len(ds.labels) >= 2 else ["_a", "_b"]
        model = build_model(cfg.backbone, labels).to(dev)
        set_trainable(model, "linear")
        model.eval().to(memory_format=torch.channels_last)
        dim = classifier_of(model).in_features
        total = sum(len(p[0]) for p in parts)
        offset, computed = 0, 0
        vectors: dict[int, np.ndarray] = {}
        for part_items, part_rows in parts:
            if not part_items:
                continue
            ordered = [part_items[r] for r in part_rows]  # the cache's row order
            emb_cache = EmbeddingCache(ws, ordered, spec, key, dim)

            def report(done: int, _need: int, base: int = offset) -> None:
                if progress is not None:
                    progress(base + done, total)

            def pixels(items: list[Item] = part_items) -> np.ndarray:
                return cache.load_pixels(ws, items, spec)

            emb, _, n = fill_embeddings(
                emb_cache,
                len(ordered),
                model,
                pixels,
                part_rows,
                spec,
                dev,
                autocast=_autocast(dev),
                batch=128 if dev.type == "cuda" else 32,
                deadline=deadline,
                flip=flip,
                progress=report,
            )
            computed += n
            for it, row in zip(ordered, np.asarray(emb), strict=True):
                vectors[it.id] = row
            offset += len(ordered)
            if progress is not None:
                progress(offset, total)
    finally:
        if dev.type == "cpu":
            torch.set_num_threads(threads)
    items = list(ds.items)
    out = np.zeros((len(items), dim), np.float32)
    for i, it in enumerate(items):
        out[i] = vectors[it.id]
    return Embedded(
        items=items,
        emb=out,
        key=key,
        seconds=time.monotonic() - t0,
        computed=computed,
        model=cfg.backbone,
        image_size=cfg.image_size,
        resize=cfg.resize,
    )
