"""Folder reader: ``SOURCE/<label>/<image>``; files deeper in a label folder keep that label,
files directly in ``SOURCE`` are unlabeled. Hidden files and folders (``.name``) are skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from autovision.data.problems import BAD_LABEL, PATH_NOT_ALLOWED, Problem
from autovision.data.readers._base import Reader, Record, Scope, check_label, local_path
from autovision.errors import DatasetError


class FolderReader(Reader):
    name = "folder"

    def read(self, source: str, *, scope: Scope | None = None) -> Iterator[Record | Problem]:
        if local_path(source) is None:
            yield from _read_remote(source)
            return
        root = Path(source).expanduser()
        if not root.is_dir():
            raise DatasetError(f"{source}: not a folder")
        real_root = root.resolve()
        roots = [real_root, *(Path(r).expanduser().resolve() for r in (scope or Scope()).roots)]
        found = False
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            rel = here.relative_to(root)
            label: str | None = None
            if rel.parts:
                label, why = check_label(rel.parts[0])
                if label is None:
                    if len(rel.parts) == 1:
                        yield Problem(str(here), BAD_LABEL, f"folder name: {why}")
                    dirnames[:] = []
                    continue
            for d in list(dirnames):
                if (here / d).is_symlink():
                    dirnames.remove(d)
                    yield Problem(
                        str(here / d), PATH_NOT_ALLOWED, "links to folders are not followed"
                    )
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                found = True
                path = here / name
                target = path.resolve()
                if not any(target.is_relative_to(r) for r in roots):
                    yield Problem(
                        str(path),
                        PATH_NOT_ALLOWED,
                        f"link to {str(target)!r}, outside the source folder "
                        "(--allow-root DIR allows another folder)",
                    )
                    continue
                yield Record(source=str(path), uri=str(target), labels=(label,) if label else ())
        if not found:
            raise DatasetError(
                f"{source}: no image files in the folder (expected SOURCE/<label>/<image>)"
            )


def _read_remote(source: str) -> Iterator[Record | Problem]:
    """An object-store prefix (``s3://bucket/images/``) laid out as ``<label>/<image>``."""
    from autovision.workspace.storage import filesystem, translate_errors

    fs, base = filesystem(source)
    base = base.rstrip("/")
    with translate_errors(source):
        try:
            paths = sorted(fs.find(base))
        except FileNotFoundError:
            paths = []
    prefix = source.rstrip("/")
    found = False
    for path in paths:
        rel = path[len(base) :].lstrip("/")
        parts = rel.split("/")
        if not rel or any(p.startswith(".") for p in parts):
            continue
        found = True
        url = f"{prefix}/{rel}"
        label: str | None = None
        if len(parts) > 1:
            label, why = check_label(parts[0])
            if label is None:
                yield Problem(url, BAD_LABEL, f"folder name: {why}")
                continue
        yield Record(source=url, uri=url, labels=(label,) if label else ())
    if not found:
        raise DatasetError(
            f"{source}: no image files under the prefix (expected SOURCE/<label>/<image>)"
        )
