"""The deploy page: models with versions, aliases and history; promote and roll back
(admins only, CSRF, refusals that say why); "try it" answers with the package's own
probabilities, names a file it cannot read, keeps the server's limits; user text escaped."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from autovision.versions import store

from ._deploy_models import LABELS, XSS, build_package, register

HX = {"HX-Request": "true"}
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("deploy-packages")
    return [build_package(root / f"seed{seed}", seed) for seed in (21, 22)]


@pytest.fixture
def leaves(workspace, packages) -> list[str]:
    """``leaves`` versions 1 and 2 (test accuracy 0.81 and 0.87)."""
    return register(workspace, packages, accuracies=(0.81, 0.87))


def _promote(client, csrf, version, alias="production", *, seen=None, htmx=True, **extra):
    data = {"name": "leaves", "version": str(version), "alias": alias, **extra}
    if seen is not None:
        data["seen"] = seen
    return client.post(
        "/deploy/promote",
        data={**data, "csrf_token": csrf},
        headers=HX if htmx else {},
        follow_redirects=False,
    )


def _rollback(client, csrf, alias="production", expect=None):
    data = {"name": "leaves", "alias": alias, "csrf_token": csrf}
    if expect is not None:
        data["expect"] = str(expect)
    return client.post("/deploy/rollback", data=data, headers=HX)


def _try(client, csrf, files, model="leaves@production", htmx=True):
    return client.post(
        "/deploy/try",
        data={"model": model},
        files=[("files", (name, data, "image/png")) for name, data in files],
        headers={**(HX if htmx else {}), "X-CSRF-Token": csrf},
    )


def _confidences(html: str) -> dict[str, dict[str, float]]:
    """``{file name: {label: confidence}}`` read back from the results fragment."""
    out: dict[str, dict[str, float]] = {}
    for article in re.findall(
        r'<article class="result" data-name="([^"]*)">(.*?)</article>', html, re.S
    ):
        name, body = article
        pairs = re.findall(r'data-label="([^"]*)" data-confidence="([^"]*)"', body)
        out[_unescape(name)] = {_unescape(label): float(p) for label, p in pairs}
    return out


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def _audit(workspace, action):
    lines = workspace.audit_log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("action") == action]


def test_no_models_yet(client_as):
    client, _ = client_as("viewer")
    html = client.get("/deploy").text
    assert "No trained models yet" in html and 'action="/deploy/try"' not in html
    assert '<a href="/deploy" class="active"' in html


def test_lists_versions_aliases_and_history(client_as, workspace, leaves):
    store.set_alias(workspace, "leaves", 2, "production", reason="better")
    client, _ = client_as("viewer")
    html = client.get("/deploy").text
    assert 'id="model-leaves"' in html and "2 versions · latest v2" in html
    aliases = re.findall(r'<tr data-alias="([a-z]+)" data-version="(\d+)">', html)
    assert aliases == [("default", "1"), ("production", "2")]
    for version, model_id, score in ((1, leaves[0], "0.810"), (2, leaves[1], "0.870")):
        assert f'<tr data-version="{version}">' in html and model_id in html and score in html
    assert "Alias history (2 events)" in html and ">better<" in html
    assert "leaves@production (version 2)" in html  # a try-it choice, production first
    assert html.index("leaves@production (version 2)") < html.index("leaves@default (version 1)")
    # a viewer sees no deploy controls
    assert 'action="/deploy/promote"' not in html and "Roll back to" not in html


def test_admin_promotes_then_rolls_back(client_as, workspace, leaves):
    client, csrf = client_as("admin")
    page = client.get("/deploy").text
    assert 'action="/deploy/promote"' in page and 'name="seen" value="default=1"' in page
    assert "no earlier version" in page  # default never moved
    done = _promote(client, csrf, 1, seen="default=1", reason="first release")
    assert done.status_code == 200
    assert "leaves@production: no version → version 1 (set)." in done.text
    # the try-it choices follow the move, out of band, the alias just moved chosen
    oob = done.text[done.text.index('<span id="tryit-targets" hx-swap-oob="innerHTML">') :]
    assert '<option value="leaves@production" selected>leaves@production (version 1)' in oob
    done = _promote(client, csrf, 2, seen="default=1;production=1")
    assert "leaves@production: version 1 → version 2 (set)." in done.text
    assert "Roll back to v1" in done.text
    assert store.aliases(workspace, "leaves") == {"default": 1, "production": 2}

    back = _rollback(client, csrf, expect=2)
    assert back.status_code == 200, back.text
    assert "leaves@production: version 2 → version 1 (rollback)." in back.text
    assert store.aliases(workspace, "leaves")["production"] == 1
    events = store.history(workspace, "leaves", "production")
    assert [(e.kind, e.actor) for e in events] == [("set", "admin-user")] * 2 + [
        ("rollback", "admin-user")
    ]
    assert events[0].reason == "first release"
    audited = _audit(workspace, "alias.set") + _audit(workspace, "alias.rollback")
    assert len(audited) == 3
    assert all(e["user"] == "admin-user" and e["via"] == "console" for e in audited)


def test_plain_form_posts_redirect_back(client_as, workspace, leaves):
    client, csrf = client_as("admin")
    done = _promote(client, csrf, 2, "staging", htmx=False)
    assert done.status_code == 303 and done.headers["location"] == "/deploy#model-leaves"
    refused = _promote(client, csrf, 2, "staging", htmx=False)
    assert refused.status_code == 409 and "<h1>Deploy</h1>" in refused.text
    assert "leaves@staging already names version 2" in refused.text


def test_refusals_say_why(client_as, workspace, leaves):
    client, csrf = client_as("admin")
    refused = _rollback(client, csrf, "default")
    assert refused.status_code == 409
    assert "Not done." in refused.text and "nothing to roll back: leaves@default" in refused.text
    assert "hx-swap-oob" not in refused.text
    assert 'id="model-leaves"' in refused.text  # the card comes back with the reason
    # an alias moved by someone else since the page was loaded
    store.set_alias(workspace, "leaves", 2, "production")
    stale = _promote(client, csrf, 1, seen="default=1")  # the page showed no production
    assert stale.status_code == 409 and "it moved in the meantime" in stale.text
    store.set_alias(workspace, "leaves", 1, "production")
    assert _rollback(client, csrf, expect=1).status_code == 200
    twice = _rollback(client, csrf, expect=1)  # the second click of a stale page
    assert twice.status_code == 409 and "names version 2, not the expected version 1" in twice.text
    bad = _promote(client, csrf, 2, "Prod!")
    assert bad.status_code == 409 and "invalid alias" in bad.text
    missing = _promote(client, csrf, 9)
    assert "has no version 9" in missing.text
    assert store.aliases(workspace, "leaves") == {"default": 1, "production": 2}


@pytest.mark.parametrize("role", ["trainer", "reviewer", "viewer"])
def test_only_admins_deploy_even_by_hand(client_as, workspace, leaves, role):
    store.set_alias(workspace, "leaves", 1, "production")
    store.set_alias(workspace, "leaves", 2, "production")
    client, csrf = client_as(role)
    page = client.get("/deploy").text
    assert 'action="/deploy/promote"' not in page and "Roll back to" not in page
    promoted = _promote(client, csrf, 1, "default")
    assert promoted.status_code == 403 and f"Your role ({role}) may not do this" in promoted.text
    assert _rollback(client, csrf).status_code == 403
    assert store.aliases(workspace, "leaves") == {"default": 1, "production": 2}
    refusals = _audit(workspace, "console.refused")
    assert [(e["reason"], e["needs"]) for e in refusals] == [("role", "deploy")] * 2


def test_csrf_is_required(client_as, workspace, leaves, image_bytes):
    client, csrf = client_as("admin")
    for token in (None, "not-the-token"):
        data = {"name": "leaves", "version": "2", "alias": "production"}
        if token:
            data["csrf_token"] = token
        refused = client.post("/deploy/promote", data=data)
        assert refused.status_code == 403 and "did not come from this console" in refused.text
        refused = client.post("/deploy/rollback", data={**data, "alias": "default"})
        assert refused.status_code == 403
    tried = _try(client, "nope", [("a.png", image_bytes(0, 40))])
    assert tried.status_code == 403
    assert "production" not in store.aliases(workspace, "leaves")


def test_try_it_answers_with_the_package_probabilities(
    client_as, app, workspace, leaves, image_bytes, tmp_path
):
    from autovision.predict.pipeline import predict_batch

    store.set_alias(workspace, "leaves", 2, "production")
    client, csrf = client_as("viewer")  # trying a model changes nothing: any role may
    files = [(f"leaf-{i}.png", image_bytes(i % 3, 48 + 8 * i, seed=i)) for i in range(3)]
    answer = _try(client, csrf, files)
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert 'data-model="m-leaves-2" data-version="2"' in html
    assert 'Answered by <strong class="answered-by">leaves@2</strong>' in html
    assert "what <code>leaves@production</code> names now" in html and "3 images in" in html
    for name, data in files:
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "preds.jsonl"
    predict_batch(workspace.model_path("leaves@2"), [str(tmp_path / n) for n, _ in files], out)
    expected = {
        Path(line["instance"]["content"]).name: dict(
            zip(line["prediction"]["displayNames"], line["prediction"]["confidences"], strict=True)
        )
        for line in map(json.loads, out.read_text().splitlines())
    }
    got = _confidences(html)
    assert got == expected and set(got["leaf-0.png"]) == set(LABELS)
    for name in got:  # the top label is the verdict; the preview is inline
        top = max(got[name], key=got[name].get)
        article = html[html.index(f'data-name="{name}"') :]
        verdict = re.search(r'<p class="verdict">(.*?)</p>', article, re.S).group(1)
        assert _unescape(re.sub(r"<[^>]+>", "", verdict)).strip() == top
    assert html.count('src="data:image/jpeg;base64,') == 3

    # the version the alias names now answers; packages load once per version
    store.set_alias(workspace, "leaves", 1, "production")
    again = _try(client, csrf, files[:1])
    assert 'data-version="1"' in again.text and "leaves@1" in again.text
    _try(client, csrf, files[:1], model="leaves@2")
    assert app.state.tryit.packages.loads == 2
    tried = _audit(workspace, "console.try")
    assert [(e["ref"], e["images"], e["user"]) for e in tried] == [
        ("leaves@2", 3, "viewer-user"),
        ("leaves@1", 1, "viewer-user"),
        ("leaves@2", 1, "viewer-user"),
    ]


def test_a_corrupt_upload_is_named_and_the_others_answered(client_as, leaves, image_bytes):
    client, csrf = client_as("trainer")
    good = image_bytes(1, 48)
    answer = _try(
        client,
        csrf,
        [("good.png", good), ("broken scan.jpg", good[: len(good) // 3]), ("notes.png", b"hi")],
        model="leaves@default",
    )
    assert answer.status_code == 200
    html = answer.text
    assert "1 image" not in html and "2 could not be read" in html
    assert list(_confidences(html)) == ["good.png"]
    failed = re.findall(r'data-name="([^"]+)" data-reason="([a-z_]+)"', html)
    assert failed == [("broken scan.jpg", "unreadable"), ("notes.png", "unsupported_format")]
    assert (
        "broken scan.jpg: corrupt or truncated image" in html or "broken scan.jpg: cannot" in html
    )
    assert "notes.png: not an image in an allowed format" in html


def test_try_it_limits_and_mistakes(client_as, app, leaves, image_bytes):
    from autovision.console.tryit import TryItLimits, tryit_state

    client, csrf = client_as("viewer")
    small = image_bytes(0, 40)
    nothing = _try(client, csrf, [])
    assert nothing.status_code == 400 and "Choose one or more images" in nothing.text
    unknown = _try(client, csrf, [("a.png", small)], model="leaves@staging")
    assert unknown.status_code in (400, 404) and "has no alias &#39;staging&#39;" in unknown.text
    state = tryit_state(app)
    state.limits = TryItLimits(max_upload_bytes=len(small) * 2 + 10, max_files=3)
    big = _try(client, csrf, [(f"{i}.png", small) for i in range(3)])
    assert big.status_code == 413 and "over the limit of" in big.text
    many = _try(client, csrf, [(f"{i}.png", b"x") for i in range(4)])
    assert many.status_code in (400, 413) and "at most 3 images" in many.text
    state.limits = TryItLimits(max_pixels=60 * 60)
    bomb = io.BytesIO()
    Image.new("RGB", (4000, 3000)).save(bomb, format="PNG")
    answer = _try(
        client, csrf, [("bomb.png", bomb.getvalue()), ("ok.png", small)], model="leaves@default"
    )
    assert answer.status_code == 200
    assert 'data-name="bomb.png" data-reason="too_many_pixels"' in answer.text
    assert "bomb.png: 4000x3000 = 12000000 pixels is over the limit of 3600" in answer.text
    assert list(_confidences(answer.text)) == ["ok.png"]


def test_try_it_without_htmx_shows_the_whole_page(client_as, workspace, leaves, image_bytes):
    client, csrf = client_as("viewer")
    page = _try(client, csrf, [("a.png", image_bytes(0, 40))], model="leaves@default", htmx=False)
    assert page.status_code == 200 and "<h1>Deploy</h1>" in page.text
    assert 'data-name="a.png"' in page.text
    assert '<option value="leaves@default" selected>' in page.text


def test_user_text_is_escaped(client_as, workspace, leaves, image_bytes):
    client, csrf = client_as("admin")
    _promote(client, csrf, 2, reason=XSS)
    page = client.get("/deploy").text
    answer = _try(client, csrf, [(f"{XSS}.png", image_bytes(2, 40))]).text
    for html in (page, answer):
        assert XSS not in html
    assert ESCAPED in page  # the reason in the history
    assert f'data-name="{ESCAPED}.png"' in answer  # the file name
    assert f'data-label="{ESCAPED}"' in answer  # the label
