"""The usage page: the figures of ``autovision usage`` as tables and bar charts, the
period, a bad period said in words, and user text escaped."""

from __future__ import annotations

import re

import pytest

from autovision.usage.records import ServeRecorder, TrainRecorder
from autovision.usage.report import usage_report

from ._deploy_models import XSS, build_package


@pytest.fixture(scope="module")
def serving_package(tmp_path_factory):
    return build_package(tmp_path_factory.mktemp("usage") / "m-1", seed=1, labels=("cat", "dog"))


def _record(workspace, serving_package) -> None:
    workspace.register_model(
        "m-1", dataset="pets", dataset_version=1, task="single-label", path=serving_package
    )
    with TrainRecorder(workspace, "pets@1") as rec:
        rec.note(model="m-1", trials=3, stop_reason="TRIALS_DONE", run_id="r-1")
    serve = ServeRecorder(workspace)
    for ms in (5, 10, 20):
        serve.observe("m-1", 2, ms / 1000)
    serve.close()


def test_empty_workspace(client_as):
    client, _ = client_as("viewer")
    page = client.get("/usage")
    assert page.status_code == 200
    html = page.text
    assert "No training run ended in this period" in html
    assert "No predictions were served in this period" in html
    assert '<div class="value" id="stat-runs">0</div>' in html
    assert '<a href="/usage" class="active"' in html


def test_figures_match_the_report(client_as, workspace, serving_package, image_folder):
    from autovision.data.importer import import_dataset

    import_dataset(workspace, "pets", image_folder(("cat", "dog"), per_label=3), workers=1)
    _record(workspace, serving_package)
    report = usage_report(workspace, "7d")
    client, _ = client_as("viewer")
    html = client.get("/usage").text
    (train,) = report.train
    (serve,) = report.serve
    assert train["ref"] == "pets@1" and serve["ref"] == "pets@1"
    section = html[html.index('id="usage-train"') : html.index('id="usage-serve"')]
    assert "TRIALS_DONE" in section and ">pets@1<" in section
    assert f'<td class="num">{train["trials"]}</td>' in section
    assert f"{train['wall_s']:,.1f}" in section
    section = html[html.index('id="usage-serve"') : html.index('id="usage-storage"')]
    assert f'<td class="num">{serve["predictions"]}</td>' in section  # 6 images
    assert f'<td class="num">{serve["requests"]}</td>' in section
    assert f"{serve['p50_ms']:.2f}" in section and f"{serve['p99_ms']:.2f}" in section
    assert '<svg class="chart"' in section and "<title>pets@1: 6</title>" in section
    assert '<div class="value" id="stat-predictions">6</div>' in html
    storage = html[html.index('id="usage-storage"') :]
    assert "6 images" in storage and "prediction log" in storage
    # the longest bar is the largest store; a bar per store with bytes
    widths = [
        float(w)
        for w in re.findall(
            r'class="bar-fill[^"]*" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', storage
        )
    ]
    assert widths and max(widths) == widths[0] and len(widths) == 2  # dataset, model


def test_period_and_a_bad_period(client_as, workspace, serving_package):
    _record(workspace, serving_package)
    client, _ = client_as("viewer")
    html = client.get("/usage?since=all").text
    assert '<option value="all" selected>all time</option>' in html
    assert "autovision usage --since all" in html
    custom = client.get("/usage?since=90m").text
    assert '<option value="90m" selected>90m</option>' in custom
    bad = client.get("/usage", params={"since": XSS})
    assert bad.status_code == 400 and "Cannot show this period" in bad.text
    assert "invalid --since" in bad.text and XSS not in bad.text


def test_model_names_are_escaped(client_as, workspace, serving_package):
    workspace.register_model(
        "m-x", dataset="pets", dataset_version=1, task="single-label", path=serving_package
    )
    serve = ServeRecorder(workspace)
    serve.observe(XSS, 1, 0.01)  # a served model the workspace does not know: shown by id
    serve.close()
    client, _ = client_as("viewer")
    html = client.get("/usage").text
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_login_required(app):
    from fastapi.testclient import TestClient

    from ._helpers import BASE

    response = TestClient(app, base_url=BASE).get("/usage", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
