"""The vendored htmx is the reviewed file (hash pinned), carries its license, and the wheel
ships every template and static file (the console works from a plain install)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autovision.console.deps import STATIC, TEMPLATES

ROOT = Path(__file__).resolve().parents[2]
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"  # 2.0.11


def test_vendored_htmx_is_pinned_and_licensed():
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == HTMX_SHA256
    license_text = (STATIC / "htmx-LICENSE.txt").read_text()
    assert "Zero-Clause BSD" in license_text


def test_templates_never_mark_text_safe_and_have_no_inline_script():
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert "|safe" not in text.replace(" ", ""), path.name
        assert "<script>" not in text and " style=" not in text, path.name
        assert "autoescape false" not in text, path.name


@pytest.mark.slow
def test_the_wheel_ships_templates_and_static_files(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(project)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("autovision-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p for p in (*TEMPLATES.iterdir(), *STATIC.iterdir()) if p.is_file()]
    assert wanted
    for path in wanted:
        assert f"autovision/console/{path.parent.name}/{path.name}" in names, path.name
