"""Every route, fuzzed from the app's own OpenAPI schema (``app.openapi()``; the schema is
not served), with schemathesis's positive and negative cases: no 5xx, no stack trace or
path in a body, 4xx answers in the route's JSON error form, and /healthz answering after
each operation. Run open (no keys), with a valid admin key and with a wrong one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given

from autovision.security import create_key

from . import fuzzing as F

EXAMPLES = int(os.environ.get("AUTOVISION_FUZZ_EXAMPLES", "25"))


def fuzz_operation(
    operation: Any, session: Any, headers: dict[str, str], tally: F.Tally, markers: tuple
) -> None:
    """``EXAMPLES`` cases of one operation, each answer checked; the server alive after."""
    route = f"{operation.method.upper()} {operation.path}"

    @F.fuzz_settings(EXAMPLES, derandomize=True)
    @given(F.case_strategy(operation))
    def run(case: Any) -> None:
        F.call_case(case, session, headers, tally, markers)

    run()
    if not F.alive(session):
        tally.failures.append(F.Failure("server not alive after", route, None, ""))


@pytest.fixture
def app(served_ws) -> Iterator[Any]:
    app = F.build_app(served_ws)
    yield app
    F.stop_app(app)


def test_schema_describes_every_body(app):
    """Routes that read their body themselves still describe it, so the fuzzer sends one;
    and the schema stays private (not served)."""
    paths = app.openapi()["paths"]
    for path, method in [
        ("/v1/models/{model}:predict", "post"),
        ("/v1/projects/{project}/locations/{location}/endpoints/{endpoint}:predict", "post"),
        ("/v1/models/{model}:upload", "post"),
        ("/v2/models/{model}/infer", "post"),
        ("/v2/models/{model}/versions/{version}/infer", "post"),
        ("/admin/keys", "post"),
        ("/admin/models/{name}/aliases/{alias}", "put"),
        ("/admin/models/{name}/aliases/{alias}:rollback", "post"),
        ("/admin/review/{name}/{prediction_id}", "post"),
        ("/v1/feedback", "post"),
    ]:
        assert "requestBody" in paths[path][method], path
    session = F.asgi_session(app)
    assert session.get("/openapi.json").status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["open", "admin_key", "wrong_key"])
def test_every_route(app, served_ws, auth):
    headers: dict[str, str] = {}
    if auth != "open":
        _, key = create_key(served_ws, "admin")
        headers["Authorization"] = f"Bearer {key if auth == 'admin_key' else 'avk_wrong'}"
    session = F.asgi_session(app)
    schema = F.fuzz_schema(app)
    tally = F.Tally()
    for operation in F.operations(schema):
        fuzz_operation(operation, session, headers, tally, (str(served_ws.root),))
    print("\n" + tally.table())
    for failure in tally.failures:
        print(failure)
    assert F.alive(session)
    bad = tally.failures
    assert not bad, f"{len(bad)} bad answers:\n" + "\n".join(map(str, bad))
