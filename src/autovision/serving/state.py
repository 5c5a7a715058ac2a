"""What a running server holds: settings, workspace, keys, audit log, metrics, and the
served models (each a :class:`ModelPackage` loaded once plus its batcher)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from autovision.errors import AutovisionError
from autovision.models.package import ModelPackage
from autovision.security.audit import AuditLog, RefusalAggregator, audit_event, audited, check_tail
from autovision.security.keys import KeyStore
from autovision.serving.batching import DynamicBatcher
from autovision.serving.errors import ApiError
from autovision.serving.metrics import Metrics
from autovision.serving.settings import ServerSettings
from autovision.usage.records import ServeRecorder

log = logging.getLogger("autovision.serving")


@dataclass
class ServedModel:
    id: str
    package: ModelPackage
    batcher: DynamicBatcher

    @property
    def labels(self) -> list[str]:
        return self.package.labels

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.package.task,
            "labels": list(self.package.labels),
            "inputSize": self.package.preprocessing.input_size,
            "backbone": self.package.meta.get("architecture", {}).get("backbone"),
        }


class ServerState:
    """Built by ``create_app``; :meth:`load` runs in the lifespan, :meth:`close` at exit."""

    def __init__(self, ws: Any, settings: ServerSettings) -> None:
        self.ws = ws
        self.settings = settings
        self.keys = KeyStore(ws, ttl=settings.key_cache_ttl_s)
        self.audit = AuditLog(ws.audit_log_path)
        self.refusals = RefusalAggregator(self.audit)  # refused requests, bounded per client
        self.metrics = Metrics()
        self.usage = ServeRecorder(ws, flush_s=settings.usage_flush_s)  # usage records
        self.models: dict[str, ServedModel] = {}
        self.failed: dict[str, str] = {}  # asked for, not loaded: id -> why (for the log)
        self.explicit = bool(settings.model_ids)
        self.pool: ThreadPoolExecutor | None = None
        self.ready = False
        self.metrics.add_gauge(
            "autovision_queue_images",
            "Images admitted and not yet answered, by model.",
            ("model",),
            lambda: [({"model": m.id}, m.batcher.pending) for m in self.models.values()],
        )
        self.metrics.add_gauge(
            "autovision_models_loaded",
            "Models loaded and served.",
            (),
            lambda: [({}, len(self.models))],
        )

    def model_ids(self) -> list[str]:
        if self.settings.model_ids:
            return list(self.settings.model_ids)
        return [m["model"] for m in self.ws.list_models() if m.get("status", "ready") == "ready"]

    @audited("server.start", ws="self", after=lambda a: _audit_details(a["self"]))
    def load(self) -> None:
        """Load every package once (one ORT session each) and start its batcher. A model
        that cannot be loaded is remembered in :attr:`failed` (its ready route says so) and
        the server stays up, unready when :meth:`is_ready` says."""
        log_audit_check(self.ws.audit_log_path)
        s = self.settings
        for model_id in self.model_ids():
            try:
                path = self.ws.model(model_id)["path"]
                package = ModelPackage.load(path, threads=s.ort_threads, spinning=s.ort_spinning)
            except AutovisionError as exc:
                self.failed[model_id] = str(exc)
                log.error("model %s cannot be loaded: %s", model_id, exc)
                continue
            self.models[model_id] = self._serve(model_id, package)
        if not self.models:
            log.error("no model loaded: the server answers not ready")
        self.pool = ThreadPoolExecutor(
            max_workers=s.preprocess_threads or os.cpu_count() or 2,
            thread_name_prefix="preprocess",
        )
        for m in self.models.values():
            m.batcher.start()
        self.ready = True
        self.usage.start()
        log.info("serving %d model(s): %s", len(self.models), ", ".join(self.models) or "none")

    def _serve(self, model_id: str, package: ModelPackage) -> ServedModel:
        s = self.settings

        def on_batch(images: int, seconds: float) -> None:
            self.metrics.batch_size.observe(images, model=model_id)
            self.metrics.inference.observe(seconds, model=model_id)
            self.metrics.images.inc(images, model=model_id)

        served: ServedModel
        workers = s.inference_workers or (1 if package.on_gpu else os.cpu_count() or 1)
        # under load: single-threaded calls side by side; a lone batch: the every-core session
        side_by_side = package.new_session(threads=1, spinning=False) if workers > 1 else None

        def run(x):
            return served.package.predict_array(x, side_by_side)

        def run_alone(x):
            return served.package.predict_array(x)

        batcher = DynamicBatcher(
            run,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_batch_wait_ms,
            queue_limit=s.queue_limit,
            on_batch=on_batch,
            name=model_id,
            workers=workers,
            run_alone=run_alone if side_by_side is not None else None,
        )
        served = ServedModel(model_id, package, batcher)
        return served

    def is_ready(self) -> bool:
        """Loaded, with at least one model, and every model asked for by id loaded."""
        return self.ready and bool(self.models) and not (self.explicit and self.failed)

    def close(self) -> None:
        self.refusals.close()
        audit_event(self, "server.stop", **_audit_details(self))
        self.ready = False
        for m in self.models.values():
            m.batcher.stop()
        self.usage.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def model(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            if name in self.failed:
                raise ApiError(
                    503, "model_not_loaded", f"model {name!r} could not be loaded at start-up"
                )
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise ApiError(404, "model_not_found", f"no model {shown!r} is served here")
        return served


def log_audit_check(path: Any) -> None:
    """Check the audit chain's tail at start-up and say so in the server's log."""
    ok, message = check_tail(path)
    (log.info if ok else log.warning)("%s", message)


def _audit_details(state: ServerState) -> dict[str, Any]:
    s = state.settings
    return {
        "pid": os.getpid(),
        "host": s.host,
        "port": s.port,
        "models": list(state.models),
        "failed": sorted(state.failed),
    }
