"""The Train page through TestClient: the form (versions, detected task, validation), roles
and CSRF on start and cancel, the options a job gets, the progress page and fragment, the
Server-Sent Events stream, the console's start-up recovery; slow: a real worker trains a
tiny dataset to its model version through the console."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from fastapi.testclient import TestClient

from autovision.data.dataset import Item
from autovision.jobs import job_status, list_jobs, store
from autovision.security.audit import read_audit

from ._helpers import BASE

XSS = "<img src=x onerror=alert(1)>"
SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 3],
    "batch_size": 16,
}


@pytest.fixture
def tiny(workspace, image_bytes):
    """Dataset ``tiny`` (labels a, b; 8/3/2 images each per split) in two versions, the
    second multi-label."""
    items, k = [], 1
    for li, label in enumerate(("a", "b")):
        for split, n in (("train", 8), ("validation", 3), ("test", 2)):
            for _ in range(n):
                sha = workspace.blobs.put(image_bytes(li, 16, k))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    workspace.create_version("tiny", items, multi_label=False)
    workspace.create_version("tiny", items, multi_label=True)
    return workspace


@pytest.fixture
def spawned(monkeypatch) -> list[str]:
    """No worker process: the job ids whose worker would have started."""
    from autovision.jobs import api

    started: list[str] = []
    monkeypatch.setattr(api, "_spawn", lambda ws, job_id: started.append(job_id))
    return started


def _form(csrf: str, **fields) -> dict:
    return {
        "csrf_token": csrf,
        "dataset": "tiny@1",
        "budget_kind": "trials",
        "trials": "1",
        **fields,
    }


def _start(client: TestClient, csrf: str, **fields) -> str:
    r = client.post("/train/start", data=_form(csrf, **fields), follow_redirects=False)
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].removeprefix("/train/jobs/")
    assert re.fullmatch(r"job-[0-9-]+-[0-9a-f]{6}", job_id)
    return job_id


def _sse(text: str) -> list[tuple[str, dict, str | None]]:
    """(event, data, id) of each message of an event stream."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and line[0] != ":")
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return out


def _finish(ws, job_id: str, *, trials=((0, 0.5), (1, 0.75)), result=None) -> None:
    """Write what a worker would: a search with ``trials`` (number, score), then done."""
    store.set_fields(ws, job_id, status="running")
    store.append_event(ws, job_id, {"event": "job", "status": "running", "attempt": 1})
    budget = {"seconds": None, "trials": len(trials)}
    store.append_event(ws, job_id, {"event": "search_start", "run_id": "r1", "budget": budget})
    for n, score in trials:
        cfg = {"backbone": "compact_cnn", "mode": "scratch", "image_size": 16}
        store.append_event(
            ws, job_id, {"event": "trial_start", "trial": n, "config": cfg, "epochs": 2}
        )
        store.append_event(
            ws,
            job_id,
            {
                "event": "trial_end",
                "trial": n,
                "config": cfg,
                "state": "COMPLETE",
                "score": score,
                "seconds": 3.2 + n,
                "elapsed": 4.0 * (n + 1),
            },
        )
    result = result or {"name": "tiny", "version": 1, "stop_reason": "TRIALS_DONE"}
    store.append_event(ws, job_id, {"event": "done", "result": {"stop_reason": "TRIALS_DONE"}})
    store.set_fields(ws, job_id, status="done", result=result)
    store.append_event(ws, job_id, {"event": "job", "status": "done", "attempt": 1})


# ---- the form -------------------------------------------------------------------------------


def test_train_page_offers_every_version_with_its_detected_task(client_as, tiny) -> None:
    client, _ = client_as("trainer")
    html = client.get("/train").text
    assert 'action="/train/start"' in html
    options = re.findall(r'<option value="(tiny@\d)" data-task="([a-z-]+)"', html)
    assert options == [("tiny@2", "multi-label"), ("tiny@1", "single-label")]  # newest first
    assert "detected: multi-label" in html  # the preselected version, the latest
    for issue in ("label_issues", "exact_duplicates", "near_duplicates", "conflicting_labels"):
        assert f'name="exclude_issues" value="{issue}"' in html
    assert 'value="split_leakage"' in html and 'value="outliers"' in html
    assert "No training yet" in html


def test_a_link_can_preselect_the_version(client_as, tiny) -> None:
    """The monitor page's "Retrain" opens ``/train?dataset=...``."""
    client, _ = client_as("trainer")
    selected = r'<option value="(tiny@\d)"[^>]* selected>'
    assert re.findall(selected, client.get("/train?dataset=tiny@1").text) == ["tiny@1"]
    assert re.findall(selected, client.get("/train?dataset=tiny").text) == ["tiny@2"]
    assert re.findall(selected, client.get("/train?dataset=" + XSS).text) == ["tiny@2"]
    assert XSS not in client.get("/train?dataset=" + XSS).text


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_readers_see_no_form(client_as, tiny, role) -> None:
    client, _ = client_as(role)
    html = client.get("/train").text
    assert client.get("/train").status_code == 200
    assert 'action="/train/start"' not in html
    assert f"Your role ({role}) can follow trainings" in html


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_readers_cannot_start_even_by_posting_the_form(client_as, tiny, spawned, role) -> None:
    client, csrf = client_as(role)
    r = client.post("/train/start", data=_form(csrf), follow_redirects=False)
    assert r.status_code == 403 and "may not do this (train.start)" in r.text
    assert list_jobs(tiny) == [] and spawned == []


def test_start_without_the_csrf_token_is_refused(client_as, tiny, spawned) -> None:
    client, _ = client_as("trainer")
    form = _form("")
    r = client.post("/train/start", data={k: v for k, v in form.items() if k != "csrf_token"})
    assert r.status_code == 403 and "stale" in r.text
    r = client.post("/train/start", data=_form("not-the-token"))
    assert r.status_code == 403
    assert list_jobs(tiny) == [] and spawned == []


def test_logged_out_start_goes_to_login(app, tiny, spawned) -> None:
    r = TestClient(app, base_url=BASE).post("/train/start", data=_form("x"))
    assert r.status_code in (401, 403) and spawned == []


def test_start_makes_a_job_with_the_forms_options(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    job_id = _start(
        client,
        csrf,
        dataset="tiny@2",
        task="single-label",
        budget_kind="trials",
        trials="3",
        seed="7",
        name="leafy",
        exclude_issues=["near_duplicates", "exact_duplicates"],
        budget="5m",  # not used: trials were chosen,
    )
    assert spawned == [job_id]  # a worker for it, not a thread of the server
    st = job_status(tiny, job_id)
    assert st["dataset"] == "tiny@2" and st["user"] == "trainer-user"
    assert st["status"] == "queued" and st["kind"] == "train"
    assert st["options"] == {
        "task": "single-label",
        "trials": 3,
        "seed": 7,
        "name": "leafy",
        "exclude_issues": "exact_duplicates,near_duplicates",
    }
    start = [e for e in read_audit(tiny.audit_log_path) if e["action"] == "job.start"]
    assert start[-1]["user"] == "trainer-user" and start[-1]["via"] == "console"
    assert start[-1]["target"] == job_id and start[-1]["trials"] == 3


def test_a_time_budget_and_the_defaults(client_as, tiny, spawned) -> None:
    client, csrf = client_as("admin")
    job_id = _start(client, csrf, budget_kind="time", budget="1m", trials="")
    assert job_status(tiny, job_id)["options"] == {"task": "auto", "budget": "1m", "seed": 0}
    page = client.get(f"/train/jobs/{job_id}").text
    assert "Budget <strong>1m</strong>" in page and 'data-status="queued"' in page


def test_an_htmx_start_is_told_where_to_go(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    r = client.post("/train/start", data=_form(csrf), headers={"HX-Request": "true"})
    assert r.status_code == 204 and r.headers["hx-redirect"] == f"/train/jobs/{spawned[0]}"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"budget_kind": "time", "budget": "abc"}, "invalid budget 'abc'"),
        ({"budget_kind": "time", "budget": ""}, "budget: give a time"),
        ({"budget_kind": "hours"}, "budget: time or trials"),
        ({"trials": "0"}, "trials: between 1 and"),
        ({"trials": "many"}, "trials: a whole number, got 'many'"),
        ({"seed": "x"}, "seed: a whole number"),
        ({"dataset": "nope"}, "no dataset named 'nope'"),
        ({"dataset": "tiny@9"}, "has no version 9"),
        ({"dataset": "tiny@@"}, "tiny@@"),
        ({"task": "both"}, "unknown task 'both'"),
        ({"name": "bad name!"}, "invalid model name 'bad name!'"),
        ({"base_model": "ghost@1"}, "ghost"),
        ({"exclude_issues": ["nonsense"]}, "unknown issue nonsense"),
    ],
)
def test_the_form_says_what_is_wrong_and_keeps_the_values(
    client_as, tiny, spawned, fields, message
) -> None:
    client, csrf = client_as("trainer")
    r = client.post("/train/start", data=_form(csrf, **{"seed": "11", **fields}))
    assert r.status_code == 400
    error = re.search(r"Cannot start.</strong> ([^<]*)</div>", r.text).group(1)
    assert message.replace("'", "&#39;") in error
    if "seed" not in fields:
        assert 'name="seed" value="11"' in r.text  # what was typed stays in the form
    assert list_jobs(tiny) == [] and spawned == []


def test_user_text_in_errors_is_escaped(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    r = client.post("/train/start", data=_form(csrf, name=XSS))
    assert r.status_code == 400 and XSS not in r.text and "&lt;img src=x" in r.text


# ---- a job's page ---------------------------------------------------------------------------


def test_the_job_page_shows_trials_best_budget_and_the_model_link(client_as, tiny, spawned):
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf, trials="2")
    _finish(tiny, job_id)
    html = client.get(f"/train/jobs/{job_id}").text
    assert 'data-status="done"' in html and "data-events" not in html  # nothing to follow
    assert "hx-trigger" not in html.split('id="train-progress"')[1].split(">")[0]
    rows = re.findall(r'<tr class="trial( best)?" data-trial="(\d+)" data-phase="explore">', html)
    assert rows == [("", "0"), (" best", "1")]
    assert "0.750" in html and "compact_cnn · scratch · 16 px · trial 1" in html
    assert (
        "2 of 2 trials" in html
        and "TRIALS_DONE" in html
        and "every trial of the budget ran" in html
    )
    assert 'href="/models/tiny/1"' in html and ">tiny@1</a>" in html
    assert "Cancel</button>" not in html
    table = client.get("/train").text
    assert f'href="/train/jobs/{job_id}"' in table and 'href="/models/tiny/1"' in table


def test_a_running_job_is_followed_live_and_can_be_cancelled(client_as, tiny, spawned):
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf)
    store.append_event(tiny, job_id, {"event": "search_start", "budget": {"trials": 1}})
    html = client.get(f"/train/jobs/{job_id}").text
    assert f'data-events="/train/jobs/{job_id}/events"' in html
    assert f'hx-get="/train/jobs/{job_id}/progress" hx-trigger="every 2s"' in html  # fallback
    assert "/static/train.js?v=" in html and "Cancel</button>" in html
    assert 'id="train-jobs" hx-get="/train/jobs" hx-trigger="every 2s"' in client.get("/train").text
    fragment = client.get(f"/train/jobs/{job_id}/progress")
    assert fragment.text.startswith('<div id="train-progress"') and "<html" not in fragment.text
    assert "0 of 1 trials" in fragment.text

    viewer, viewer_csrf = client_as("viewer")
    assert "Cancel</button>" not in viewer.get(f"/train/jobs/{job_id}").text
    r = viewer.post(f"/train/jobs/{job_id}/cancel", data={"csrf_token": viewer_csrf})
    assert r.status_code == 403
    assert client.post(f"/train/jobs/{job_id}/cancel").status_code == 403  # no CSRF token
    assert job_status(tiny, job_id)["status"] == "queued"

    r = client.post(
        f"/train/jobs/{job_id}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"/train/jobs/{job_id}"
    assert job_status(tiny, job_id)["status"] == "cancelled"
    html = client.get(f"/train/jobs/{job_id}").text
    assert 'data-status="cancelled"' in html and "Cancelled." in html
    assert "Cancel</button>" not in html
    audit = [e for e in read_audit(tiny.audit_log_path) if e["action"] == "job.cancel"]
    assert audit[-1]["user"] == "trainer-user" and audit[-1]["target"] == job_id


def test_cancelling_a_finished_job_says_so(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf)
    _finish(tiny, job_id)
    r = client.post(
        f"/train/jobs/{job_id}/cancel", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 409 and "already done: nothing to cancel" in r.text
    assert r.text.startswith('<div id="train-progress"')


def test_trial_text_is_escaped(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf)
    store.append_event(
        tiny, job_id, {"event": "trial_end", "trial": 0, "state": "FAIL", "error": XSS}
    )
    html = client.get(f"/train/jobs/{job_id}").text
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("suffix", ["", "/progress", "/events"])
def test_an_unknown_job_is_404(client_as, tiny, suffix) -> None:
    client, _ = client_as("viewer")
    r = client.get(f"/train/jobs/job-nope{suffix}")
    assert r.status_code == 404 and "No training job job-nope" in r.text


def test_cancel_of_an_unknown_job_is_404(client_as, tiny) -> None:
    client, csrf = client_as("trainer")
    assert client.post("/train/jobs/job-nope/cancel", data={"csrf_token": csrf}).status_code == 404


# ---- the event stream -----------------------------------------------------------------------


def test_the_event_stream_sends_every_event_in_order_and_ends_at_done(client_as, tiny, spawned):
    client, csrf = client_as("viewer")
    trainer, trainer_csrf = client_as("trainer")
    job_id = _start(trainer, trainer_csrf, trials="2")
    _finish(tiny, job_id)

    r = client.get(f"/train/jobs/{job_id}/events")

    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.text.startswith("retry: 2000\n\n")
    messages = _sse(r.text)
    *progress, end = messages
    assert end == ("end", {"status": "done", "last_seq": len(progress)}, None)
    assert [int(i) for _, _, i in progress] == list(range(1, len(progress) + 1))
    assert [d["seq"] for _, d, _ in progress] == list(range(1, len(progress) + 1))
    kinds = [d["event"] if d["event"] != "job" else d["status"] for _, d, _ in progress]
    assert kinds == ["queued", "running", "search_start"] + [
        "trial_start",
        "trial_end",
    ] * 2 + ["done", "done"]
    ends = [d for _, d, _ in progress if d["event"] == "trial_end"]
    assert [(d["trial"], d["score"]) for d in ends] == [(0, 0.5), (1, 0.75)]

    later = _sse(client.get(f"/train/jobs/{job_id}/events?after=7").text)
    assert [i for _, _, i in later] == ["8", "9", None]
    resumed = client.get(f"/train/jobs/{job_id}/events", headers={"Last-Event-ID": "8"})
    assert [i for _, _, i in _sse(resumed.text)] == ["9", None]


def test_the_event_stream_follows_a_job_as_it_runs(client_as, tiny, spawned, monkeypatch):
    from autovision.console.routes import train as page

    monkeypatch.setattr(page, "POLL_S", 0.02)
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf, trials="3")
    writer = threading.Thread(
        target=lambda: (time.sleep(0.3), _finish(tiny, job_id, trials=((0, 0.1), (1, 0.2)))),
        daemon=True,
    )
    writer.start()
    with client.stream("GET", f"/train/jobs/{job_id}/events") as r:
        text = "".join(r.iter_text())
    writer.join()
    messages = _sse(text)
    assert messages[0][1]["status"] == "queued" and messages[-1][0] == "end"
    assert messages[-1][1]["status"] == "done"
    assert [d["seq"] for e, d, _ in messages if e == "progress"] == list(range(1, 10))


def test_a_cancelled_job_ends_its_stream(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf)
    client.post(f"/train/jobs/{job_id}/cancel", data={"csrf_token": csrf})
    messages = _sse(client.get(f"/train/jobs/{job_id}/events").text)
    assert messages[-1] == ("end", {"status": "cancelled", "last_seq": 2}, None)


# ---- recovery at the console's start --------------------------------------------------------


def test_the_console_start_resumes_lost_jobs(make_app, tiny, spawned, monkeypatch) -> None:
    """The lifespan runs the recovery (servers without a lifespan call it themselves)."""
    from autovision import jobs

    seen = []
    monkeypatch.setattr(jobs, "recover_jobs", lambda ws: seen.append(ws) or [])
    app = make_app()
    assert seen == []
    with TestClient(app, base_url=BASE):
        assert seen == [tiny]


def test_recover_at_start_resumes_a_job_whose_worker_is_gone(client_as, tiny, spawned) -> None:
    from autovision.console.recovery import recover_at_start

    client, csrf = client_as("trainer")
    job_id = _start(client, csrf)
    store.set_fields(tiny, job_id, status="running", pid=2**22 + 12345, host=store.this_host())

    actions = recover_at_start(tiny)

    assert [a["action"] for a in actions] == ["interrupted", "resumed"]
    assert spawned == [job_id, job_id] and job_status(tiny, job_id)["status"] == "queued"
    assert recover_at_start(tiny) == []


def test_a_failing_recovery_does_not_stop_the_console(tiny, monkeypatch, caplog) -> None:
    from autovision import jobs
    from autovision.console.recovery import recover_at_start

    def broken(ws):
        raise RuntimeError("database locked")

    monkeypatch.setattr(jobs, "recover_jobs", broken)
    assert recover_at_start(tiny) == []
    assert "recovering the interrupted training jobs failed" in caplog.text


# ---- a real worker --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_one_trial_training_through_the_console_to_its_model(client_as, tiny, monkeypatch):
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    monkeypatch.setenv("AUTOVISION_JOB_HEARTBEAT_S", "0.5")
    client, csrf = client_as("trainer")
    job_id = _start(client, csrf, dataset="tiny@1", trials="1", seed="1")

    end = time.monotonic() + 300
    while time.monotonic() < end:
        fragment = client.get(f"/train/jobs/{job_id}/progress").text
        status = re.search(r'data-status="([a-z]+)"', fragment).group(1)
        if status not in ("queued", "running"):
            break
        time.sleep(0.2)
    st = job_status(tiny, job_id)
    assert status == "done", (st["error"], (tiny.root / "jobs" / f"{job_id}.log").read_text())
    assert st["pid"] and st["pid"] != __import__("os").getpid()  # trained by a worker process
    page = client.get(f"/train/jobs/{job_id}").text
    assert 'href="/models/tiny/1"' in page and "TRIALS_DONE" in page
    assert re.search(r'<tr class="trial best" data-trial="0" data-phase="explore">', page)
    assert "compact_cnn" in page and "1 of 1 trials" in page
    messages = _sse(client.get(f"/train/jobs/{job_id}/events").text)
    kinds = [d.get("event") for e, d, _ in messages if e == "progress"]
    assert kinds.index("search_start") < kinds.index("trial_end") < kinds.index("done")
    assert messages[-1][0] == "end" and messages[-1][1]["status"] == "done"
    assert tiny.model("tiny@1")["model"] == st["result"]["model"]


# ---- retrain (the monitor page's entry point) -----------------------------------------------


def test_retrain_starts_a_retrain_job_for_trainers_only(client_as, tiny, spawned, monkeypatch):
    from autovision.versions import store as versions

    monkeypatch.setattr(versions, "aliases", lambda ws, name: {"default": 1})
    viewer, viewer_csrf = client_as("viewer")
    r = viewer.post("/train/retrain", data={"csrf_token": viewer_csrf, "name": "tiny"})
    assert r.status_code == 403 and spawned == []
    client, csrf = client_as("trainer")
    assert client.post("/train/retrain", data={"name": "tiny"}).status_code == 403  # no CSRF

    form = {"csrf_token": csrf, "name": "tiny", "budget_kind": "trials", "trials": "2"}
    r = client.post("/train/retrain", data=form, follow_redirects=False)

    assert r.status_code == 303 and spawned
    job_id = r.headers["location"].removeprefix("/train/jobs/")
    st = job_status(tiny, job_id)
    assert st["kind"] == "retrain" and st["retrain_of"] == "tiny" and st["user"] == "trainer-user"
    assert st["options"] == {"trials": 2, "seed": 0, "alias": "production"}
    assert "Retraining tiny" in client.get(f"/train/jobs/{job_id}").text
    assert "model tiny" in client.get("/train").text


def test_retrain_of_an_unknown_model_says_so(client_as, tiny, spawned) -> None:
    client, csrf = client_as("trainer")
    r = client.post("/train/retrain", data={"csrf_token": csrf, "name": "ghost"})
    assert r.status_code == 400 and "Cannot retrain" in r.text and "ghost" in r.text
    assert spawned == []
