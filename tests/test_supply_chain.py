"""The lock installs what pyproject.toml asks for; the audit never passes an audit of nothing."""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _locked() -> dict[str, str]:
    """Name -> exact version of every requirement in the lock."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", LOCK.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def test_every_requirement_is_locked_at_a_version_it_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock has {req.name}=={locked[name]}, pyproject.toml wants {req}: "
            "run `make lock`"
        )


def test_lock_pins_the_makefile_torch_and_hashes_every_entry() -> None:
    pins = re.search(r"^TORCH_PINS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pins, "Makefile lost TORCH_PINS"
    locked = _locked()
    for pin in pins.group(1).split():
        name, version = pin.split("==")
        assert locked.get(name) == version, f"requirements.lock does not pin {pin}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    unhashed = [e.split()[0] for e in entries if e.strip() and "--hash=sha256:" not in e]
    assert not unhashed, f"entries without a hash: {unhashed}"
    # the Linux CUDA build of torch brings its nvidia-* wheels: the lock is for that platform
    assert any(name.startswith("nvidia-") for name in locked)


@pytest.fixture(scope="module")
def audit():
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / ".ci" / "audit_deps.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_deps"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("audit_deps", None)


def _dep(name: str, vulns=(), skip: str | None = None) -> dict:
    if skip:
        return {"name": name, "skip_reason": skip}
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


def test_a_found_vulnerability_fails_and_names_package_and_fix(audit) -> None:
    vuln = {"id": "PYSEC-2026-1", "fix_versions": ["1.1"], "aliases": ["CVE-2026-1"]}
    report = {"dependencies": [_dep("pillow", [vuln]), _dep("numpy")]}
    verdict = audit.judge(1, report, "Found 1 known vulnerability in 1 package", "pypi")
    assert verdict.kind == "found"
    assert "pillow 1.0: PYSEC-2026-1 (CVE-2026-1); fixed in 1.1" in "\n".join(verdict.lines)


def test_every_package_skipped_is_unreachable_not_clean(audit) -> None:
    # what pip-audit reports, exit 0, when PyPI answers 404 for every release
    skip = "Dependency not found on PyPI and could not be audited: numpy (1.0)"
    report = {"dependencies": [_dep("numpy", skip=skip), _dep("torch", skip=skip)]}
    assert audit.judge(0, report, "No known vulnerabilities found", "pypi").kind == "unreachable"


def test_a_partial_audit_is_clean_and_lists_what_it_skipped(audit) -> None:
    skip = "Dependency not found on PyPI and could not be audited: private-pkg (1.0)"
    report = {"dependencies": [_dep("numpy"), _dep("private-pkg", skip=skip)]}
    verdict = audit.judge(0, report, "", "pypi")
    assert verdict.kind == "clean"
    assert any("private-pkg" in line for line in verdict.lines)


def test_network_failures_and_timeouts_are_unreachable_other_errors_fail(audit) -> None:
    dns = "requests.exceptions.ConnectionError: ... NameResolutionError(...api.osv.dev...)"
    assert audit.judge(1, None, dns, "osv").kind == "unreachable"
    assert audit.judge(None, None, "", "osv").kind == "unreachable"
    assert audit.judge(1, None, "Traceback ...\nKeyError: 'vulns'", "pypi").kind == "error"


def test_main_prints_skipped_and_passes_when_no_service_answers(audit, monkeypatch, capsys):
    monkeypatch.setattr(audit, "run", lambda lock, service: audit.Verdict("unreachable", [service]))
    assert audit.main(["audit_deps.py", str(LOCK)]) == 0
    assert audit.SKIPPED in capsys.readouterr().out


def test_main_fails_on_found_even_after_an_unreachable_service(audit, monkeypatch):
    verdicts = {"pypi": audit.Verdict("unreachable"), "osv": audit.Verdict("found", ["x"])}
    monkeypatch.setattr(audit, "run", lambda lock, service: verdicts[service])
    assert audit.main(["audit_deps.py", str(LOCK)]) == 1


class _FakeOSV(http.server.BaseHTTPRequestHandler):
    """OSV's query API on loopback: one advisory for every pillow before 999, none for others."""

    def do_POST(self) -> None:  # noqa: N802
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        vulns = []
        if query["package"]["name"] == "pillow":
            vulns.append(
                {
                    "id": "PYSEC-2099-1",
                    "aliases": ["CVE-2099-1"],
                    "summary": "test advisory",
                    "details": "test advisory",
                    "affected": [
                        {
                            "package": {"name": "pillow", "ecosystem": "PyPI"},
                            "ranges": [
                                {
                                    "type": "ECOSYSTEM",
                                    "events": [{"introduced": "0"}, {"fixed": "999.0"}],
                                }
                            ],
                        }
                    ],
                }
            )
        body = json.dumps({"vulns": vulns}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_real_pip_audit_finding_against_a_loopback_advisory_service_fails(audit, tmp_path):
    pytest.importorskip("pip_audit")
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    small = [e for e in entries if e.startswith(("pillow==", "numpy=="))]
    lock = tmp_path / "requirements.lock"
    lock.write_text("\n".join(small) + "\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOSV)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"
        verdict = audit.run(str(lock), "osv", osv_url=url)
    finally:
        server.shutdown()
    assert verdict.kind == "found", verdict.lines
    pillow = _locked()["pillow"]
    expected = f"pillow {pillow}: PYSEC-2099-1 (CVE-2099-1); fixed in 999.0"
    assert expected in "\n".join(verdict.lines)
