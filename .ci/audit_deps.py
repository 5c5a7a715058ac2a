"""pip-audit over requirements.lock: fails on a known vulnerability, says plainly when the
advisory service cannot be reached (and then passes), and fails on anything it cannot explain.

pip-audit alone reports "No known vulnerabilities found" with exit 0 when the PyPI service
answers 404 for every package (as a mirror that does not serve the per-release JSON API does):
that is an audit of nothing, so it is reported here as skipped, never as a pass.

Usage: python .ci/audit_deps.py [requirements.lock]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

SKIPPED = "pip-audit: skipped: the advisory service (PyPI/OSV) is not reachable from this machine"
SERVICES = ("pypi", "osv")  # tried in turn: OSV when PyPI gave nothing
SOCKET_TIMEOUT_S = 15  # pip-audit's per-request timeout
RUN_TIMEOUT_S = 240  # the whole run against one service
NETWORK_ERRORS = (
    "ConnectionError",
    "NameResolutionError",
    "Max retries exceeded",
    "ConnectTimeout",
    "ReadTimeout",
    "Read timed out",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "SSLError",
    "Could not connect",  # pip-audit's own wording for a refused or timed-out service
    "network may be blocking",
)


@dataclass
class Verdict:
    """What one run says: `found` (vulnerabilities), `clean`, `unreachable` or `error`."""

    kind: str
    lines: list[str] = field(default_factory=list)


def judge(rc: int | None, report: dict | None, output: str, service: str) -> Verdict:
    """Classify one pip-audit run from its exit code (None: timed out), JSON report and output."""
    if rc is None:
        return Verdict("unreachable", [f"{service}: no answer within {RUN_TIMEOUT_S} s"])
    if report is not None:
        deps = report.get("dependencies", [])
        vulnerable = [d for d in deps if d.get("vulns")]
        if vulnerable:
            lines = [f"{service}: known vulnerabilities in {len(vulnerable)} locked package(s):"]
            for dep in vulnerable:
                for vuln in dep["vulns"]:
                    fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix released"
                    aliases = ", ".join(vuln.get("aliases") or [])
                    lines.append(
                        f"  {dep['name']} {dep.get('version', '?')}: {vuln['id']}"
                        + (f" ({aliases})" if aliases else "")
                        + f"; fixed in {fixes}"
                    )
            lines.append("Raise its floor in pyproject.toml, then: make lock LOCK_FLAGS=--upgrade")
            return Verdict("found", lines)
        skipped = [d for d in deps if "skip_reason" in d]
        audited = len(deps) - len(skipped)
        if audited == 0:
            return Verdict(
                "unreachable",
                [f"{service}: not one of the {len(deps)} locked packages could be looked up"]
                + ([f"  e.g. {skipped[0]['skip_reason']}"] if skipped else []),
            )
        lines = [f"pip-audit: {audited} locked packages audited against {service}: none vulnerable"]
        lines += [f"  not audited: {d['skip_reason']}" for d in skipped]
        return Verdict("clean", lines)
    if any(marker in output for marker in NETWORK_ERRORS):
        last = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "")
        return Verdict("unreachable", [f"{service}: {last.strip()[:300]}"])
    tail = output.strip().splitlines()[-15:]
    return Verdict("error", [f"pip-audit failed against {service} (exit {rc}):", *tail])


def run(lock: str, service: str, osv_url: str | None = None) -> Verdict:
    """One pip-audit run over the hashed lock, without pip resolving anything."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "pip_audit", "-r", lock, "--require-hashes", "--disable-pip"]
        cmd += ["--progress-spinner", "off", "--timeout", str(SOCKET_TIMEOUT_S)]
        cmd += ["-s", service, "-f", "json", "-o", out]
        if osv_url:
            cmd += ["--osv-url", osv_url]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return judge(None, None, "", service)
        report = None
        if os.path.exists(out):
            try:
                with open(out) as f:
                    report = json.load(f)
            except ValueError:
                report = None
        return judge(proc.returncode, report, proc.stdout + proc.stderr, service)


def main(argv: list[str]) -> int:
    lock = argv[1] if len(argv) > 1 else "requirements.lock"
    try:
        import pip_audit  # noqa: F401
    except ImportError:
        print("pip-audit: not installed in this venv (it is in the dev extra: make install)")
        return 2
    reasons: list[str] = []
    for service in SERVICES:
        verdict = run(lock, service)
        if verdict.kind == "unreachable":
            reasons += verdict.lines
            continue
        print("\n".join(verdict.lines))
        return {"clean": 0, "found": 1}.get(verdict.kind, 2)
    print(SKIPPED)
    print("\n".join(f"  {r}" for r in reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
