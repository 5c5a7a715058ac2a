"""The public surface is pinned, and ``import autovision`` stays light."""

from __future__ import annotations

import subprocess
import sys

import autovision


def test_public_api_is_pinned():
    assert sorted(autovision.__all__) == sorted(
        [
            "AutovisionError",
            "Client",
            "DatasetError",
            "ImageDecodeError",
            "ModelError",
            "Workspace",
            "WorkspaceError",
            "__version__",
        ]
    )
    for name in autovision.__all__:
        assert getattr(autovision, name) is not None


def test_import_is_light():
    code = (
        "import sys, autovision; "
        "mods = ('torch', 'onnxruntime', 'fastapi', 'timm', 'optuna'); "
        "heavy = [m for m in mods if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
