"""Prometheus metrics in the text exposition format (version 0.0.4), written here.

One :class:`Metrics` per app (tests build many apps); with ``--workers N`` each process
reports its own numbers.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _fmt_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class _Metric(ABC):
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> Labels:
        return tuple((n, str(labels.get(n, ""))) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    @abstractmethod
    def render(self) -> list[str]:
        """The metric's sample lines in the Prometheus text format."""


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_fmt_labels(k)} {_fmt_value(v)}" for k, v in items]


class Gauge(_Metric):
    """A gauge read at scrape time from a callback returning ``{labels: value}``."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str],
        read: Callable[[], Iterable[tuple[dict[str, str], float]]],
    ) -> None:
        super().__init__(name, help_text, label_names)
        self._read = read

    def render(self) -> list[str]:
        lines = self.header()
        for labels, value in self._read():
            lines.append(f"{self.name}{_fmt_labels(self._key(labels))} {_fmt_value(value)}")
        return lines


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self._data: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._data.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            total[0] += value

    def snapshot(self, **labels: str) -> tuple[int, float]:
        """``(count, sum)`` for one label set."""
        with self._lock:
            counts, total = self._data.get(self._key(labels), ([0], [0.0]))
            return sum(counts), total[0]

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._data.items())
        for key, (counts, total) in items:
            cumulative = 0
            for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += c
                le = (("le", _fmt_value(bound)),)
                lines.append(f"{self.name}_bucket{_fmt_labels(key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_fmt_value(total)}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {cumulative}")
        return lines


class Metrics:
    """The server's metrics; ``render()`` gives the ``GET /metrics`` body."""

    def __init__(self) -> None:
        self.requests = Counter(
            "autovision_requests_total",
            "HTTP requests by route, method and status code.",
            ("route", "method", "code"),
        )
        self.latency = Histogram(
            "autovision_request_duration_seconds",
            "HTTP request latency in seconds.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.errors = Counter(
            "autovision_errors_total", "Error responses by error code.", ("code",)
        )
        self.batch_size = Histogram(
            "autovision_batch_size",
            "Images per ONNX Runtime call (dynamic batching).",
            ("model",),
            BATCH_BUCKETS,
        )
        self.inference = Histogram(
            "autovision_inference_duration_seconds",
            "ONNX Runtime time per batch in seconds.",
            ("model",),
            LATENCY_BUCKETS,
        )
        self.images = Counter("autovision_images_total", "Images classified, by model.", ("model",))
        self._metrics: list[_Metric] = [
            self.requests,
            self.latency,
            self.errors,
            self.batch_size,
            self.inference,
            self.images,
        ]

    def add_counter(self, name: str, help_text: str, label_names: Sequence[str]) -> Counter:
        counter = Counter(name, help_text, label_names)
        self._metrics.append(counter)
        return counter

    def add_gauge(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str],
        read: Callable[[], Iterable[tuple[dict[str, str], float]]],
    ) -> None:
        self._metrics.append(Gauge(name, help_text, label_names, read))

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
