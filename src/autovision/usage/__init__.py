"""Usage and cost: records written as training runs and served models do their work
(``records``), and the report over them plus the storage in use (``report``)."""

from __future__ import annotations

from autovision.usage.records import (
    ServeRecorder,
    TrainRecorder,
    current_train,
    read_records,
    recorded_train,
)
from autovision.usage.report import UsageError, UsageReport, storage, usage_report

__all__ = [
    "ServeRecorder",
    "TrainRecorder",
    "UsageError",
    "UsageReport",
    "current_train",
    "read_records",
    "recorded_train",
    "storage",
    "usage_report",
]
