"""Folder reader: ``SOURCE/<label>/<image>``; files deeper in a label folder keep that label,
files directly in ``SOURCE`` are unlabeled. Hidden files and folders (``.name``) are skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from autovision.data.problems import BAD_LABEL, PATH_NOT_ALLOWED, Problem
from autovision.data.readers._base import Reader, Record, Scope, check_label
from autovision.errors import DatasetError


class FolderReader(Reader):
    name = "folder"

    def read(self, source: str, *, scope: Scope | None = None) -> Iterator[Record | Problem]:
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
