"""``add_model(name=..., test_accuracy=...)``: a registered model row (no package needed)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

import pytest


@pytest.fixture
def add_model(workspace, tmp_path) -> Callable[..., str]:
    ids = count(1)

    def add(name: str | None = "pets", *, dataset: str = "pets", test_accuracy=None) -> str:
        model_id = f"m-{next(ids):03d}"
        workspace.register_model(
            model_id,
            dataset=dataset,
            dataset_version=1,
            task="single-label",
            path=tmp_path / model_id,
            name=name,
        )
        if test_accuracy is not None:
            workspace.update_model_info(model_id, test_metrics={"accuracy": test_accuracy})
        return model_id

    return add
