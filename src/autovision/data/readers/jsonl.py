"""JSONL reader, the Vertex AI layout, one JSON object per line::

    {"imageGcsUri": "gs://b/a.jpg",
     "classificationAnnotation": {"displayName": "cat"},          # single-label, or
     "classificationAnnotations": [{"displayName": "cat"}, ...],  # multi-label
     "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": "training"},
     "metadata": {"camera": "a"}}                                  # optional, scalar values

Blank lines are skipped; anything else that is not such an object is a ``bad_row``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from autovision.data.problems import BAD_LABEL, BAD_ROW, Problem
from autovision.data.readers._base import (
    ML_USE,
    Reader,
    Record,
    Scope,
    bad_text,
    check_label,
    read_text,
    resolve_entry,
    source_folder,
    text_lines,
)
from autovision.errors import DatasetError

ML_USE_KEY = "aiplatform.googleapis.com/ml_use"


class JsonlReader(Reader):
    name = "jsonl"

    def read(self, source: str, *, scope: Scope | None = None) -> Iterator[Record | Problem]:
        text = read_text(source, kind="JSONL")
        base = source_folder(source)
        rows = 0
        for line, raw in text_lines(text):
            if not raw.strip():
                continue
            rows += 1
            yield parse_line(raw, source=source, base=base, line=line, scope=scope)
        if rows == 0:
            raise DatasetError(f"{source}: the JSONL file has no lines")


def parse_line(
    raw: str, *, source: str, base: str, line: int, scope: Scope | None = None
) -> Record | Problem:
    """One JSONL line to a record, or the problem that stops it."""

    def bad(message: str, reason: str = BAD_ROW, where: str = source) -> Problem:
        return Problem(where, reason, f"line {line}: {message}", line)

    if bad_text(raw):
        return bad("not valid UTF-8 text")
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return bad(f"invalid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return bad("expected a JSON object")
    path = obj.get("imageGcsUri")
    if not isinstance(path, str) or not path.strip():
        return bad("no imageGcsUri string")
    path = path.strip()

    names: list[Any] = []
    multi = "classificationAnnotations" in obj
    if "classificationAnnotation" in obj:
        ann = obj["classificationAnnotation"]
        if not isinstance(ann, dict):
            return bad("classificationAnnotation is not an object")
        names.append(ann.get("displayName"))
    if multi:
        anns = obj["classificationAnnotations"]
        if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
            return bad("classificationAnnotations is not a list of objects")
        names.extend(a.get("displayName") for a in anns)
    labels: list[str] = []
    for name in names:
        if not isinstance(name, str):
            return bad("displayName is missing or not a string", BAD_LABEL, path)
        label, why = check_label(name)
        if label is None:
            return bad(why, BAD_LABEL, path)
        if label not in labels:
            labels.append(label)

    ml_use = None
    resource = obj.get("dataItemResourceLabels", {})
    if not isinstance(resource, dict):
        return bad("dataItemResourceLabels is not an object")
    if ML_USE_KEY in resource:
        value = resource[ML_USE_KEY]
        if not isinstance(value, str) or value.strip().lower() not in ML_USE:
            return bad(f"unknown ml_use {value!r} (training, validation or test)")
        ml_use = ML_USE[value.strip().lower()]

    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        return bad("metadata is not an object")
    metadata: dict[str, str] = {}
    for key, value in meta.items():
        if isinstance(value, dict | list):
            return bad(f"metadata {key!r} is not a string or number")
        metadata[str(key)] = "" if value is None else str(value)

    uri = resolve_entry(path, base, source=path, line=line, scope=scope)
    if isinstance(uri, Problem):
        return uri
    return Record(
        source=path,
        uri=uri,
        line=line,
        labels=tuple(sorted(labels)),
        ml_use=ml_use,
        metadata=metadata,
        multi_label=multi,
    )
