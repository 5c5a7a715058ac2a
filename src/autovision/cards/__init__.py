"""Model cards (Mitchell et al. 2019), generated from the workspace's records."""

from __future__ import annotations

from typing import Any


def write_package_card(ws: Any, model_ref: str) -> None:
    """Placeholder until build lands."""
