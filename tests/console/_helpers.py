"""Helpers of the console tests: log in, read the CSRF token, follow an import job."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

BASE = "http://127.0.0.1:8090"
PASSWORD = "correct horse battery"


def login(client: TestClient, name: str, password: str = PASSWORD):
    page = client.get("/login")
    form_token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login",
        data={"name": name, "password": password, "form_token": form_token},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]*)"', html).group(1)


def wait_job(client: TestClient, job_id: str, timeout: float = 60) -> str:
    """Poll an import job's fragment until it is done or failed; returns the fragment."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        html = client.get(f"/datasets/imports/{job_id}").text
        status = re.search(r'data-status="([a-z]+)"', html).group(1)
        if status in ("done", "failed"):
            return html
        time.sleep(0.05)
    raise AssertionError(f"import {job_id} did not finish in {timeout} s")


def job_id_of(html: str) -> str:
    return re.search(r'id="import-job-([A-Za-z0-9_-]+)"', html).group(1)
