"""``list_versions``: every dataset version with its images and task, newest first."""

from __future__ import annotations

from autovision.data.catalog import list_versions
from autovision.data.dataset import Item


def _items(ws, image_bytes, n: int) -> list[Item]:
    return [
        Item(
            k,
            ws.blobs.put(image_bytes(k % 2, 16, k)),
            f"{k}.png",
            ("ab"[k % 2],),
            "train",
            16,
            16,
            "PNG",
        )
        for k in range(1, n + 1)
    ]


def test_versions_of_every_dataset_newest_first(workspace, image_bytes) -> None:
    assert list_versions(workspace) == []
    workspace.create_version("plants", _items(workspace, image_bytes, 4), multi_label=False)
    workspace.create_version("plants", _items(workspace, image_bytes, 6), multi_label=True)
    workspace.create_version("bolts", _items(workspace, image_bytes, 3), multi_label=False)

    rows = list_versions(workspace)

    got = [(r["ref"], r["images"], r["task"], r["latest"]) for r in rows]
    assert got == [
        ("bolts@1", 3, "single-label", True),
        ("plants@2", 6, "multi-label", True),
        ("plants@1", 4, "single-label", False),
    ]
    assert rows[1]["name"] == "plants" and rows[1]["version"] == 2 and rows[1]["multi_label"]
    assert rows[0]["created_at"]
