"""Batch prediction over folders, globs, CSV/JSONL lists and object storage (fsspec URLs).

``predict_batch(model, inputs, output)`` writes one Vertex-style JSON line per image and
an errors file, streams with bounded memory and resumes after an interruption.
"""

from autovision.predict.inputs import count_sources, expand_inputs
from autovision.predict.pipeline import BatchResult, default_errors_path, predict_batch

__all__ = ["BatchResult", "count_sources", "default_errors_path", "expand_inputs", "predict_batch"]
