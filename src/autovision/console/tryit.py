"""The deploy page's "try it": model packages loaded once per model version in the console
process (an ONNX Runtime session each, kept for the next upload), and the limits an upload
meets, the server's own (``autovision serve``'s defaults): body size, images per request,
pixels, and decoded bytes per image and per upload."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from autovision.serving.settings import ServerSettings


def _server_default(field: str) -> int:
    return int(ServerSettings.model_fields[field].default)


@dataclass(frozen=True)
class TryItLimits:
    """What one "try it" upload may be; the defaults are the prediction server's."""

    max_upload_bytes: int = _server_default("max_body_bytes")
    max_files: int = _server_default("max_instances")
    max_pixels: int = _server_default("max_pixels")
    max_image_bytes: int = _server_default("max_decoded_bytes_per_image")
    max_total_bytes: int = _server_default("max_decoded_bytes_per_request")


class PackageCache:
    """The last ``size`` model packages used, by model id (a model version's package never
    changes, so a cached session stays right). Loads are serialized: two uploads for a
    version not loaded yet load it once."""

    def __init__(self, size: int = 4, threads: int | None = 2) -> None:
        self.size = size
        self.threads = threads
        self._packages: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, ws: Any, model_id: str) -> Any:
        from autovision.models.package import ModelPackage

        with self._lock:
            if model_id in self._packages:
                self._packages.move_to_end(model_id)
                return self._packages[model_id]
            package = ModelPackage.load(ws.model_path(model_id), threads=self.threads)
            self.loads += 1
            self._packages[model_id] = package
            while len(self._packages) > self.size:
                self._packages.popitem(last=False)
            return package


@dataclass
class TryIt:
    """What the try-it routes share, on ``app.state.tryit`` (made at first use)."""

    limits: TryItLimits
    packages: PackageCache


_MAKING = threading.Lock()


def tryit_state(app: Any) -> TryIt:
    with _MAKING:
        state = getattr(app.state, "tryit", None)
        if state is None:
            state = app.state.tryit = TryIt(TryItLimits(), PackageCache())
        return state
