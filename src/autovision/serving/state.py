"""What a running server holds: settings, workspace, keys, audit log, metrics, and the
served models (each a :class:`ModelPackage` loaded once plus its batcher).

Served models are keyed by the name clients address: a model id as given, or the NAME of a
ref (``NAME@production``, ``NAME``, ``NAME@3``; see :mod:`autovision.versions`). A served
alias is *followed* (:class:`~autovision.serving.follow.AliasWatcher`): when it moves, the
new version is loaded and warmed beside the old one, new requests get it, and the old one
is stopped once the requests holding it have finished."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autovision.errors import AutovisionError, ModelError
from autovision.models.package import ModelPackage
from autovision.monitoring.monitor import start_drift_watcher
from autovision.security.audit import AuditLog, RefusalAggregator, audit_event, audited, check_tail
from autovision.security.keys import KeyStore
from autovision.serving.batching import DynamicBatcher
from autovision.serving.errors import ApiError
from autovision.serving.metrics import Metrics
from autovision.serving.settings import ServerSettings
from autovision.serving.shadow import ShadowRunner, start_shadow
from autovision.usage.records import ServeRecorder

log = logging.getLogger("autovision.serving")

MODEL_VERSION_HEADER = "X-Model-Version"  # on predict/infer answers: NAME@VERSION or the id


@dataclass(eq=False)
class ServedModel:
    """One loaded model version; ``name``/``version`` are None for a model id without a
    version. ``key`` is the URL name it is served under (default: its id)."""

    id: str
    package: ModelPackage
    batcher: DynamicBatcher
    name: str | None = None
    version: int | None = None
    key: str | None = None
    warmup: Any = field(default=None, repr=False)  # () -> None: one dummy predict per session
    embeds: bool = False  # its batcher answers [probabilities | embedding] (prediction log)
    users: int = field(default=0, repr=False)  # requests holding it (see ServerState.acquire)
    retired: bool = field(default=False, repr=False)  # replaced by a hot switch

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = self.id

    @property
    def labels(self) -> list[str]:
        return self.package.labels

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The batcher's answer -> (probabilities, embeddings or None)."""
        if not self.embeds:
            return y, None
        n = len(self.package.labels)
        return y[:, :n], y[:, n:]

    @property
    def version_label(self) -> str:
        """``NAME@VERSION``, or the model id without a version (the X-Model-Version header)."""
        return f"{self.name}@{self.version}" if self.version is not None else self.id

    @property
    def version_string(self) -> str:
        """The version as protocols carry it: "3"; "1" for a model id without a version."""
        return str(self.version) if self.version is not None else "1"

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "servedAs": self.key,
            "name": self.name,
            "version": self.version,
            "task": self.package.task,
            "labels": list(self.package.labels),
            "inputSize": self.package.preprocessing.input_size,
            "backbone": self.package.meta.get("architecture", {}).get("backbone"),
        }


@dataclass(frozen=True)
class Target:
    """What one served entry was asked for: its key, the model it names now, and the
    ``(name, alias)`` it follows (None: pinned to this model)."""

    key: str
    ref: str
    model_id: str
    name: str | None = None
    version: int | None = None
    follows: tuple[str, str] | None = None


def resolve_target(ws: Any, ref: str) -> Target:
    """A model id stays a model id (served under it); a ref is served under its NAME and,
    when it names an alias (``NAME``, ``NAME@production``), followed. Raises ModelError."""
    info = ws.model(ref)
    model_id = info["model"]
    name, version = info.get("name"), info.get("version")
    if model_id == ref:
        return Target(ref, ref, model_id, name, version)
    from autovision.versions.refs import parse_ref

    parsed = parse_ref(ref)
    follows = (parsed.name, parsed.alias) if parsed.alias is not None else None
    return Target(parsed.name, ref, model_id, name or parsed.name, version, follows)


def keyed(targets: list[Target]) -> list[Target]:
    """Each target under its key; a second entry of one NAME is served as its ref instead
    (``NAME@staging`` beside ``NAME``), as :meth:`ServerState.load` does."""
    seen: set[str] = set()
    out = []
    for t in targets:
        key = t.key if t.key not in seen else t.ref
        seen.add(key)
        out.append(replace(t, key=key))
    return out


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
        self.follows: dict[str, tuple[str, str]] = {}  # key -> (name, alias) it follows
        self.explicit = bool(settings.model_ids)
        self.pool: ThreadPoolExecutor | None = None
        self.shadow: ShadowRunner | None = None  # --shadow: the challenger, off the response path
        self.drift: Any = None  # the drift watcher behind the autovision_drift gauges
        self.plog: Any = None  # the prediction log (monitoring.log.PredictionLogger), or None
        self.retention: Any = None  # its purge thread
        self.ready = False
        self.watcher: Any = None
        self._lock = threading.Lock()  # lookups + acquire vs. switches
        self._retiring: set[ServedModel] = set()
        self._closing = False  # set first by close(): a switch then publishes nothing
        self._unloaded: dict[str, tuple[str, str]] = {}  # followed key -> (ref, id) not loaded
        self.switches = self.metrics.add_counter(
            "autovision_model_switches_total",
            "Hot switches of a followed alias to a new model version, by served name.",
            ("model",),
        )
        self.switch_failures = self.metrics.add_counter(
            "autovision_model_switch_failures_total",
            "Alias moves whose new version could not be loaded (the old one kept serving).",
            ("model",),
        )
        self.metrics.add_gauge(
            "autovision_queue_images",
            "Images admitted and not yet answered, by model.",
            ("model",),
            lambda: [({"model": m.id}, m.batcher.pending) for m in list(self.models.values())],
        )
        self.metrics.add_gauge(
            "autovision_models_loaded",
            "Models loaded and served.",
            (),
            lambda: [({}, len(self.models))],
        )
        self.metrics.add_gauge(
            "autovision_model_version",
            "The model version served under each name (versioned models only).",
            ("model", "model_id"),
            lambda: [
                ({"model": key, "model_id": m.id}, m.version)
                for key, m in list(self.models.items())
                if m.version is not None
            ],
        )

    def model_ids(self) -> list[str]:
        """What to serve: the refs or ids asked for, else every ready model's id."""
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
        self._start_log()
        for ref in self.model_ids():
            target = None
            try:
                target = resolve_target(self.ws, ref)
                taken = target.key in self.models or target.key in self.follows
                key = target.key if not taken else ref
                package = self.load_package(target.model_id)
            except AutovisionError as exc:
                self.failed[ref] = str(exc)
                log.error("model %s cannot be loaded: %s", ref, exc)
                if target is not None and target.follows is not None:
                    # followed all the same: loaded (and ready) once its alias moves
                    self.follows[key] = target.follows
                    self._unloaded[key] = (ref, target.model_id)
                continue
            self.models[key] = self._serve(
                target.model_id, package, name=target.name, version=target.version, key=key
            )
            if target.follows is not None:
                self.follows[key] = target.follows
        if not self.models:
            log.error("no model loaded: the server answers not ready")
        self.pool = ThreadPoolExecutor(
            max_workers=s.preprocess_threads or os.cpu_count() or 2,
            thread_name_prefix="preprocess",
        )
        for m in self.models.values():
            m.batcher.start()
        self.shadow = start_shadow(self)
        self.drift = start_drift_watcher(self)
        self.ready = True
        self.usage.start()
        log.info(
            "serving %d model(s): %s",
            len(self.models),
            ", ".join(f"{k} ({m.version_label})" for k, m in self.models.items()) or "none",
        )
        if self.follows:
            from autovision.serving.follow import AliasWatcher

            self.watcher = AliasWatcher(self, s.alias_poll_s)
            for key, (_, model_id) in self._unloaded.items():
                self.watcher.broken[key] = model_id  # tried again once the alias moves
            self.watcher.start()
            for key, (name, alias) in self.follows.items():
                log.info("%s follows %s@%s (every %g s)", key, name, alias, s.alias_poll_s)

    def load_package(self, model_id: str) -> ModelPackage:
        s = self.settings
        path = self.ws.model(model_id)["path"]
        try:
            return ModelPackage.load(path, threads=s.ort_threads, spinning=s.ort_spinning)
        except AutovisionError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. ONNX Runtime on a corrupted file
            raise ModelError(f"model package {path} cannot be loaded: {exc}") from exc

    def _serve(
        self,
        model_id: str,
        package: ModelPackage,
        *,
        name: str | None = None,
        version: int | None = None,
        key: str | None = None,
    ) -> ServedModel:
        s = self.settings

        def on_batch(images: int, seconds: float) -> None:
            self.metrics.batch_size.observe(images, model=model_id)
            self.metrics.inference.observe(seconds, model=model_id)
            self.metrics.images.inc(images, model=model_id)

        served: ServedModel
        workers = s.inference_workers or (1 if package.on_gpu else os.cpu_count() or 1)
        # under load: single-threaded calls side by side; a lone batch: the every-core session
        side_by_side = package.new_session(threads=1, spinning=False) if workers > 1 else None
        # with the prediction log, the embedding comes out of the same run, beside the probs
        embeds = self.plog is not None and package.has_embedding()

        def predict(x, session=None):
            if not embeds:
                pkg = served.package
                return pkg.predict_array(x) if session is None else pkg.predict_array(x, session)
            probs, emb = served.package.predict_with_embeddings(x, session)
            return np.concatenate([probs, emb], axis=1)

        def run(x):
            return predict(x, side_by_side)

        def run_alone(x):
            return predict(x)

        def warmup() -> None:
            size = package.preprocessing.input_size
            x = np.zeros((1, 3, size, size), dtype=np.float32)
            for fn in (run, run_alone):
                y = served.split(fn(x))[0]
                if y.shape != (1, len(package.labels)):
                    raise AutovisionError(f"warm-up answered shape {y.shape}")

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
        served = ServedModel(model_id, package, batcher, name, version, key, warmup, embeds)
        return served

    def _start_log(self) -> None:
        """The prediction log's writer and its retention thread (unless ``--no-log``)."""
        from autovision.monitoring.log import PredictionLogger, RetentionThread

        s = self.settings
        if s.log_predictions and s.log_rate > 0:
            dropped = self.metrics.add_counter(
                "autovision_prediction_log_dropped_total",
                "Prediction log records dropped because the log queue was full.",
                (),
            )
            self.plog = PredictionLogger(
                self.ws,
                rate=s.log_rate,
                store_images=s.log_store_images,
                queue_limit=s.log_queue_limit,
                on_drop=lambda n: dropped.inc(n),
            )
        if s.retention:
            self.retention = RetentionThread(self.ws, s.retention)
            self.retention.start()

    # ---- hot switch ------------------------------------------------------------------

    def switch(self, key: str, model_id: str, version: int | None) -> ServedModel:
        """Load and warm ``model_id`` beside what ``key`` serves, switch new requests to it,
        and retire the old one (stopped once no request holds it). Raises on a failed load
        or warm-up; the old one keeps serving then. During shutdown the new one is stopped
        again and the old one returned (nothing loaded outlives :meth:`close`)."""
        old = self.models.get(key)  # None: a followed alias whose start-up load failed
        name = old.name if old is not None else self.follows[key][0]
        began = time.monotonic()
        package = self.load_package(model_id)
        new = self._serve(model_id, package, name=name, version=version, key=key)
        new.warmup()
        new.batcher.start()
        seconds = time.monotonic() - began
        with self._lock:
            closing = self._closing
            if not closing:
                self.models[key] = new
                if old is not None:
                    old.retired = True
                    self._retiring.add(old)
                else:
                    ref, _ = self._unloaded.pop(key, (None, None))
                    self.failed.pop(ref or "", None)
        if closing:
            new.batcher.stop()
            log.info("%s: shutting down, %s not switched to", key, new.version_label)
            return old if old is not None else new
        self.switches.inc(model=key)
        log.info(
            "%s: switched from %s to %s (loaded and warmed in %.2f s)",
            key,
            old.version_label if old is not None else "nothing (its start-up load failed)",
            new.version_label,
            seconds,
        )
        if old is None:
            return new
        threading.Thread(
            target=self._retire, args=(old,), name=f"retire-{old.id}", daemon=True
        ).start()
        return new

    def _retire(self, old: ServedModel) -> None:
        """Stop ``old`` once no request holds it (however long a holder takes: it may still
        be reading a slow upload; every holder releases it when its request ends) and its
        batcher is empty (this part bounded by the request timeout and a second)."""
        while True:
            with self._lock:
                if old.users == 0 or self._closing:  # close() stops it itself
                    break
            time.sleep(0.02)
        deadline = time.monotonic() + self.settings.request_timeout_s + 1.0
        while old.batcher.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        if old.batcher.pending:
            log.warning("%s: %s did not drain in time; stopping it", old.key, old.version_label)
        old.batcher.stop()
        with self._lock:
            self._retiring.discard(old)
        log.info("%s: unloaded %s", old.key, old.version_label)

    # ---- requests --------------------------------------------------------------------

    def acquire(self, name: str, version: str | None = None) -> ServedModel:
        """:meth:`model` held for one request: a switch never stops it before
        :meth:`release`."""
        with self._lock:
            served = self.model(name, version)
            served.users += 1
        return served

    def release(self, served: ServedModel) -> None:
        with self._lock:
            served.users -= 1

    def is_ready(self) -> bool:
        """Loaded, with at least one model, and every model asked for by id loaded."""
        return self.ready and bool(self.models) and not (self.explicit and self.failed)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        if self.watcher is not None:
            self.watcher.stop()
        self.refusals.close()
        audit_event(self, "server.stop", **_audit_details(self))
        self.ready = False
        with self._lock:
            serving = list(self.models.values()) + list(self._retiring)
        for m in serving:
            m.batcher.stop()
        if self.shadow is not None:
            self.shadow.close()
        if self.drift is not None:
            self.drift.stop()
        self.usage.close()
        if self.plog is not None:
            self.plog.close()
        if self.retention is not None:
            self.retention.stop()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """The model served as ``name`` (its key; a loaded version's model id; a loaded
        ``NAME@VERSION``; a followed ``NAME@ALIAS``), at ``version`` when given."""
        served = self._find(name)
        if served is None:
            if name in self.failed:
                raise ApiError(
                    503, "model_not_loaded", f"model {name!r} could not be loaded at start-up"
                )
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise ApiError(404, "model_not_found", f"no model {shown!r} is served here")
        if version is None or version == served.version_string:
            return served
        for m in list(self.models.values()):
            if m.name is not None and m.name == served.name and m.version_string == version:
                return m
        shown = version if len(version) <= 20 else version[:20] + "..."
        raise ApiError(
            404,
            "model_version_not_found",
            f"model version {shown!r} of {name[:80]!r} is not served here; loaded: "
            + ", ".join(self.loaded_versions(served)),
        )

    def _find(self, name: str) -> ServedModel | None:
        served = self.models.get(name)
        if served is not None:
            return served
        current = list(self.models.items())
        for _, m in current:
            if m.id == name:
                return m
        base, at, tail = name.rpartition("@")
        if not at:
            return None
        for key, m in current:
            if m.name == base and tail == str(m.version):
                return m
            if self.follows.get(key) == (base, tail):
                return m
        return None

    def loaded_versions(self, served: ServedModel) -> list[str]:
        """The versions of ``served``'s name loaded here ("1" for a model id alone)."""
        if served.name is None or served.version is None:
            return [served.version_string]
        found = {
            m.version for m in list(self.models.values()) if m.name == served.name and m.version
        }
        return [str(v) for v in sorted(found)]


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
        "versions": [m.version_label for m in state.models.values()],
        "follows": [f"{n}@{a}" for n, a in state.follows.values()],
        "failed": sorted(state.failed),
    }
