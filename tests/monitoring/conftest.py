"""The serving fixtures (``make_client`` and the tiny package it serves) of
``tests/serving/conftest.py``, loaded by path so both folders share one definition."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_monitoring_serving_conftest", Path(__file__).parent.parent / "serving" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
serving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving)

_no_serve_env = serving._no_serve_env
serving_package = serving.serving_package
served_ws = serving.served_ws
make_client = serving.make_client
b64_image = serving.b64_image
MODEL = serving.MODEL
LABELS = serving.LABELS
