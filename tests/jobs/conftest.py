"""A tiny dataset, the fast search space, and helpers to wait for a job's worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from autovision.data.dataset import Item

SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 3],
    "batch_size": 16,
}


@pytest.fixture(autouse=True)
def _fast_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers (they inherit the environment) search a compact CNN at 16 px on one thread
    and beat their heartbeat every half second."""
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    monkeypatch.setenv("AUTOVISION_JOB_HEARTBEAT_S", "0.5")


@pytest.fixture
def tiny_ws(workspace, image_bytes):
    """Dataset ``tiny``: labels a and b, ``counts`` images per label in train / validation /
    test."""

    def build(counts: tuple[int, int, int] = (8, 3, 2)):
        items, k = [], 1
        for li, label in enumerate(("a", "b")):
            for split, n in zip(("train", "validation", "test"), counts, strict=True):
                for _ in range(n):
                    sha = workspace.blobs.put(image_bytes(li, 16, k))
                    items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                    k += 1
        workspace.create_version("tiny", items, multi_label=False)
        return workspace

    return build


def wait_for(what: Callable[[], object], timeout: float = 240.0, every: float = 0.05):
    """Poll ``what()`` until it returns something true; that value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
