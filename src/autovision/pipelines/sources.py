"""What a pipeline's source holds, by listing and content hash (local folders and any fsspec
URL): the import stage's cache input and what ``pipeline watch`` polls.

A CSV or JSONL source counts with every file under its folder, since its rows name images
there (the importer reads nothing outside the file's folder and ``allow_roots``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from autovision.errors import PipelineError

_CHUNK = 1 << 20


def watched_root(source: str) -> str:
    """The folder (or prefix) whose files a source consists of."""
    if "://" not in source and os.path.isfile(source):
        return os.path.dirname(os.path.abspath(source))
    if "://" in source and os.path.splitext(source.rstrip("/"))[1].lower() in (".csv", ".jsonl"):
        return source.rstrip("/").rsplit("/", 1)[0]
    return source


def _stamp(info: dict[str, Any]) -> tuple:
    """What changes when a file's content may have: size and modification time or ETag."""
    when = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return (info.get("size"), str(when), info.get("ETag") or info.get("etag"))


@dataclass
class SourceLister:
    """Lists a source and hashes its files; a file whose size and time are unchanged since
    the last listing keeps its hash (polling a large folder reads only what changed)."""

    _known: dict[str, tuple[tuple, str]] = field(default_factory=dict)

    def listing(self, root: str) -> dict[str, str]:
        """``{relative path: sha256}`` of every file under ``root`` (dot-files skipped)."""
        from autovision.workspace.storage import filesystem

        try:
            fs, path = filesystem(root)
            fs.invalidate_cache(path)  # a poll must see objects added since the last one
            if not fs.exists(path):
                raise PipelineError(f"{root}: no such file or folder")
            if fs.isfile(path):
                found = {path: fs.info(path)}
                base = os.path.dirname(path)
            else:
                found = fs.find(path, detail=True)
                base = path
        except PipelineError:
            raise
        except (OSError, ValueError) as exc:
            raise PipelineError(f"{root}: cannot list the source ({exc})") from None
        out: dict[str, str] = {}
        for name, info in sorted(found.items()):
            rel = os.path.relpath(name, base) if base else name
            if info.get("type") == "directory" or any(
                part.startswith(".") for part in rel.split("/")
            ):
                continue
            stamp = _stamp(info)
            known = self._known.get(name)
            if known is None or known[0] != stamp:
                known = (stamp, _sha256(fs, name))
                self._known[name] = known
            out[rel] = known[1]
        return out


def _sha256(fs: Any, name: str) -> str:
    h = hashlib.sha256()
    with fs.open(name, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest(listing: dict[str, str]) -> str:
    """One hash of a listing (paths and contents)."""
    h = hashlib.sha256()
    for rel, sha in sorted(listing.items()):
        h.update(f"{rel}\0{sha}\n".encode())
    return h.hexdigest()


def changes(before: dict[str, str] | None, after: dict[str, str]) -> dict[str, list[str]]:
    """Added, changed and removed paths between two listings."""
    before = before or {}
    return {
        "added": sorted(set(after) - set(before)),
        "changed": sorted(k for k in after if k in before and before[k] != after[k]),
        "removed": sorted(set(before) - set(after)),
    }


def source_fingerprint(source: str, lister: SourceLister | None = None) -> dict[str, Any]:
    """``{"root", "files", "hash"}`` of a source (see the module docstring)."""
    root = watched_root(source)
    listing = (lister or SourceLister()).listing(root)
    return {"root": root, "files": len(listing), "hash": digest(listing), "listing": listing}
