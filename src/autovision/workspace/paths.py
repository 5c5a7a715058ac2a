"""Paths as the workspace database stores them: relative to the workspace root (POSIX
form) when inside it, so a moved, copied or restored workspace finds its files."""

from __future__ import annotations

import os
from pathlib import Path


def to_stored(root: Path, path: str | os.PathLike[str]) -> str:
    """``path`` relative to ``root`` when inside it; a path elsewhere stays absolute."""
    p = Path(path).expanduser()
    p = p if p.is_absolute() else Path(os.path.abspath(p))
    for base in dict.fromkeys((root, root.resolve())):
        for candidate in dict.fromkeys((p, p.resolve())):
            if candidate.is_relative_to(base):
                return candidate.relative_to(base).as_posix()
    return str(p)


def resolve(root: Path, stored: str) -> Path:
    """The path on this machine of a stored path (relative ones live under ``root``)."""
    p = Path(stored)
    return p if p.is_absolute() else root / p
