"""A real server following an alias (uvicorn on loopback): a bounded request loop runs
while the alias moves twice from outside the server (as another process would, through the
workspace); no request fails, each client sees the versions switch in order, and a move to
a corrupted version leaves the previous one answering, counted in /metrics."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable

import httpx

from autovision.versions import store

from . import versioned
from .test_server_live import running
from .versioned import (
    NAME,
    corrupt,
    model_id,
    register_versions,
)

version_packages = versioned.version_packages  # the session fixture

THREADS = 3
MAX_REQUESTS = 2000  # per thread: the loop stops by itself
FAILURE_METRIC = f'autovision_model_switch_failures_total{{model="{NAME}"}} 1'


def _until(ok: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_request_loop_across_alias_moves(workspace, version_packages, tmp_path, b64_image):
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    # versions 1-3, and a 4th whose package will be corrupted
    packages = [*version_packages, version_packages[0]]
    register_versions(workspace, packages, tmp_path / "packages")
    store.set_alias(workspace, NAME, 1, "production")
    settings = ServerSettings(key_cache_ttl_s=0, alias_poll_s=0.2)
    app = create_app(workspace, [f"{NAME}@production"], settings=settings)
    body = {"instances": [{"content": b64_image()}]}
    seen: list[list[tuple[str, str]]] = [[] for _ in range(THREADS)]
    failures: list[str] = []
    stop = threading.Event()

    with running(app) as port:
        url = f"http://127.0.0.1:{port}/v1/models/{NAME}:predict"

        def loop(i: int) -> None:
            with httpx.Client(timeout=30) as http:
                for _ in range(MAX_REQUESTS):
                    if stop.is_set():
                        return
                    try:
                        r = http.post(url, json=body)
                    except httpx.HTTPError as exc:
                        failures.append(f"thread {i}: {type(exc).__name__}: {exc}")
                        continue
                    if r.status_code != 200:
                        failures.append(f"thread {i}: {r.status_code} {r.text[:200]}")
                        continue
                    seen[i].append((r.json()["modelVersionId"], r.headers["X-Model-Version"]))

        def latest() -> set[str]:
            return {s[-1][0] for s in seen if s}

        threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(THREADS)]
        for t in threads:
            t.start()
        try:
            _until(lambda: latest() == {"1"} and all(len(s) >= 3 for s in seen))
            store.set_alias(workspace, NAME, 2, "production", reason="test: move 1")
            _until(lambda: latest() == {"2"})
            store.set_alias(workspace, NAME, 3, "production", reason="test: move 2")
            _until(lambda: latest() == {"3"})
            corrupt(workspace, model_id(4))
            store.set_alias(workspace, NAME, 4, "production", reason="test: broken")
            metrics = f"http://127.0.0.1:{port}/metrics"
            _until(lambda: FAILURE_METRIC in httpx.get(metrics).text)
            counts = [len(s) for s in seen]
            _until(lambda: all(len(s) > n + 3 for s, n in zip(seen, counts, strict=True)))
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        text = httpx.get(metrics).text
        server = app.state.server
        assert server.models[NAME].version == 3
        _until(lambda: not server._retiring)  # the old versions were unloaded

    assert failures == []
    assert f'autovision_model_switches_total{{model="{NAME}"}} 2' in text
    assert f'autovision_model_version{{model="{NAME}",model_id="{model_id(3)}"}} 3' in text
    for answers in seen:
        versions = [v for v, _ in answers]
        assert all(h == f"{NAME}@{v}" for v, h in answers)
        # in order, each switch seen once; after the broken move still version 3
        assert [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v] == [
            "1",
            "2",
            "3",
        ], versions
        assert versions[-3:] == ["3", "3", "3"]
    shutil.rmtree(tmp_path / "packages", ignore_errors=True)
