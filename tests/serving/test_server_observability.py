"""Request ids, Prometheus metrics, dynamic batching seen from the outside."""

from __future__ import annotations

import base64
import re
import threading
import time

from .conftest import MODEL

URL = f"/v1/models/{MODEL}:predict"


def test_request_id_on_every_response(client, image_bytes):
    body = {"instances": [{"content": base64.b64encode(image_bytes(0, 8)).decode()}]}
    ids = set()
    for r in (
        client.post(URL, json=body),
        client.get("/v2/health/live"),
        client.get("/nope"),
        client.post(URL, json={}),
    ):
        rid = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        ids.add(rid)
    assert len(ids) == 4
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    bad = client.get("/healthz", headers={"X-Request-ID": "no spaces <allowed>"})
    assert bad.headers["x-request-id"] != "no spaces <allowed>"


def test_request_id_in_log_lines(client):
    import io
    import logging

    from autovision.serving.middleware import RequestIdFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(message)s"))
    logger = logging.getLogger("autovision.serving")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        client.get("/healthz", headers={"X-Request-ID": "trace-me"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert "[trace-me] GET /healthz 200" in stream.getvalue()


def test_metrics_text_format(client, image_bytes):
    body = {"instances": [{"content": base64.b64encode(image_bytes(0, 8)).decode()}]}
    client.post(URL, json=body)
    client.post(URL, json={"instances": [{"content": "@@"}]})
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert "# TYPE autovision_requests_total counter" in text
    assert (
        'autovision_requests_total{route="/v1/models/{model}:predict",method="POST",code="200"} 1'
        in text
    )
    assert 'autovision_errors_total{code="invalid_base64"} 1' in text
    assert "# TYPE autovision_request_duration_seconds histogram" in text
    assert re.search(
        r'autovision_request_duration_seconds_bucket\{route="[^"]+",le="\+Inf"\} \d', text
    )
    assert f'autovision_batch_size_count{{model="{MODEL}"}} 1' in text
    assert f'autovision_queue_images{{model="{MODEL}"}} 0' in text
    assert "autovision_models_loaded 1" in text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{.*\})? [-+0-9.eInf]+", line), line


def test_concurrent_requests_are_batched(make_client, image_bytes):
    client = make_client(max_batch_wait_ms=50, inference_workers=1, log_predictions=False)
    server = client.app.state.server
    pkg = server.models[MODEL].package
    real = pkg.predict_array
    first_call = threading.Event()
    release = threading.Event()

    def slow(x, session=None):
        first_call.set()
        release.wait(10)
        return real(x, session)

    pkg.predict_array = slow
    body = {"instances": [{"content": base64.b64encode(image_bytes(0, 16)).decode()}]}
    n = 8
    results: list[int] = []

    def call():
        results.append(client.post(URL, json=body).status_code)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    first_call.wait(10)
    # while the first ORT call runs, the other requests queue up
    deadline = time.monotonic() + 10
    batcher = server.models[MODEL].batcher
    while (batcher.pending < n or batcher.preparing) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(20)
    assert results == [200] * n
    count, total = server.metrics.batch_size.snapshot(model=MODEL)
    assert total == n
    assert count <= 2  # the first call, then everything that queued behind it
    text = client.get("/metrics").text
    m = re.search(rf'autovision_batch_size_bucket\{{model="{MODEL}",le="1"\}} (\d+)', text)
    assert m and int(m.group(1)) <= 1
