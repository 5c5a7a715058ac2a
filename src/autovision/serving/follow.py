"""Following an alias: a thread polls ``versions.store.alias_target`` for every served alias
and hot-switches a served name to the version its alias names now (see
:meth:`ServerState.switch`). A version that fails to load is remembered, not retried every
poll, until the alias moves again; the old version keeps serving meanwhile."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autovision.serving.state import ServerState

log = logging.getLogger("autovision.serving")


class AliasWatcher:
    """``AliasWatcher(state, interval).start()``; :meth:`poke` polls at once (after an
    admin route moved an alias); :meth:`stop` at shutdown."""

    def __init__(self, state: ServerState, interval: float) -> None:
        self.state = state
        self.interval = interval
        self.broken: dict[str, str] = {}  # key -> the model id that failed to load
        self.missing: set[str] = set()  # keys whose alias is gone (logged once)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alias-watcher", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the watcher must outlive a bad poll
                log.exception("polling the served aliases failed")

    def poll(self) -> None:
        """One round: switch every followed name whose alias names another version now."""
        from autovision.versions.store import alias_target

        for key, (name, alias) in list(self.state.follows.items()):
            if self._stop.is_set():
                return
            target = alias_target(self.state.ws, name, alias)
            self._follow(key, name, alias, target)

    def _follow(self, key: str, name: str, alias: str, target: tuple[str, int] | None) -> None:
        state = self.state
        if target is None:
            if key not in self.missing:
                self.missing.add(key)
                log.warning("%s: alias %s@%s is gone; still serving the last one", key, name, alias)
            return
        self.missing.discard(key)
        model_id, version = target
        current = state.models.get(key)  # None: its start-up load failed
        if current is not None and model_id == current.id:
            self.broken.pop(key, None)  # back where it was: a later move is tried again
            return
        if self.broken.get(key) == model_id:
            return
        log.info("%s: %s@%s moved to version %s (%s)", key, name, alias, version, model_id)
        try:
            state.switch(key, model_id, version)
        except Exception as exc:  # noqa: BLE001 - any load failure keeps the old one serving
            self.broken[key] = model_id
            state.switch_failures.inc(model=key)
            log.error(
                "%s: version %s (%s) of %s cannot be served, still serving %s: %s",
                key,
                version,
                model_id,
                name,
                current.version_label if current is not None else "nothing",
                _reason(exc),
            )
        else:
            self.broken.pop(key, None)


def _reason(exc: BaseException) -> Any:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
