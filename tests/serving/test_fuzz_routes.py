"""Every route, fuzzed from the app's own OpenAPI schema (``app.openapi()``; the schema is
not served), with schemathesis's positive and negative cases: no 5xx, no stack trace or
path in a body, 4xx answers in the route's JSON error form, and /healthz answering after
each operation. Run open (no keys), with a valid admin key, a predict key and a wrong one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from autovision.security import create_key

from . import fuzzing as F

EXAMPLES = int(os.environ.get("AUTOVISION_FUZZ_EXAMPLES", "30"))
LIKELY = {"model": F.MODEL, "endpoint": F.MODEL, "version": "1"}


def fuzz_schema(app: Any) -> Any:
    """The app's schema, for schemathesis, calling the app in-process."""
    import schemathesis

    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    return schema


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def case_strategy(operation: Any) -> Any:
    """Positive and negative cases; two in three name the served model (and version 1),
    else nearly every case would be a 404."""
    from schemathesis import GenerationMode

    names = {p.name for p in operation.path_parameters}
    fixed = {k: v for k, v in LIKELY.items() if k in names}
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(generation_mode=m) for m in modes]
    if fixed:
        strategies += [
            operation.as_strategy(generation_mode=m, path_parameters=fixed) for m in modes
        ]
        strategies += strategies[2:]
    return st.one_of(strategies)


def fuzz_operation(
    operation: Any, session: Any, headers: dict[str, str], tally: F.Tally, markers: tuple
) -> None:
    """``EXAMPLES`` cases of one operation, each answer checked; the server alive after."""
    import requests

    route = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case_strategy(operation))
    def run(case: Any) -> None:
        sent = case.as_curl_command(headers=headers).replace("http://testserver", F.BASE_URL)
        try:
            r = case.call(
                session=session, base_url=F.BASE_URL, headers=headers, timeout=F.TIMEOUT_S
            )
            ctype = r.headers.get("content-type") or r.headers.get("Content-Type") or [""]
            status, text, ctype = r.status_code, r.text, ctype[0]
        except requests.exceptions.Timeout:
            status, text, ctype = None, "", ""
        known = "pixels" in sent and _pixels_overflow(case)
        F.check_answer(
            tally,
            route,
            case.formatted_path,
            sent,
            status,
            text,
            ctype,
            known=known,
            leak_markers=markers,
        )

    run()
    if not F.alive(session):
        tally.failures.append(F.Failure("server not alive after", route, None, ""))


def _pixels_overflow(case: Any) -> bool:
    """The known v2 bug (issue 11): a ``pixels`` shape whose product passes int64."""
    body = case.body if isinstance(case.body, dict) else {}
    inputs = body.get("inputs") if isinstance(body.get("inputs"), list) else []
    return any(isinstance(i, dict) and F.overflows(i.get("shape")) for i in inputs)


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
    ]:
        assert "requestBody" in paths[path][method], path
    session = F.asgi_session(app)
    assert session.get("/openapi.json").status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["open", "admin_key", "predict_key", "wrong_key"])
def test_every_route(app, served_ws, auth):
    headers: dict[str, str] = {}
    if auth != "open":
        key_id, key = create_key(served_ws, "admin" if auth == "admin_key" else "predict")
        headers["Authorization"] = f"Bearer {key if auth != 'wrong_key' else 'avk_wrong'}"
    session = F.asgi_session(app)
    schema = fuzz_schema(app)
    tally = F.Tally()
    for operation in operations(schema):
        fuzz_operation(operation, session, headers, tally, (str(served_ws.root),))
    print("\n" + tally.table())
    for failure in tally.failures:
        print(failure)
    assert F.alive(session)
    unknown = tally.unknown()
    assert not unknown, f"{len(unknown)} bad answers:\n" + "\n".join(map(str, unknown))
    if tally.failures:
        pytest.xfail(f"only the known v2 shape overflow (issue 11): {tally.failures[0]}")
