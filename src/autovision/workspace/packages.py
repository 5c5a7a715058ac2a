"""Model packages in object storage: with a remote blob URL (``s3://bucket/prefix``) every
package is written locally as always, then published under ``BLOB_URL/models/<model_id>/``
with a ``manifest.json`` (sha256 and size of each file, written last). A machine without the
local folder fetches the package into ``ROOT/cache/packages/<model_id>``, checked against the
manifest, so one that has only the database URL and the blob URL can predict and serve.

Files are copied byte for byte: encrypted package files stay encrypted in the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from autovision.errors import ModelError
from autovision.workspace import storage

MANIFEST = "manifest.json"
FETCHED = ".manifest.json"  # the manifest a fetched copy was checked against
PREFIX = "models"


def remote_prefix(ws: Any, model_id: str) -> str | None:
    """``BLOB_URL/models/<model_id>`` for a remote blob store; ``None`` for a local one."""
    url = ws.blobs.url
    if not storage.is_remote(url):
        return None
    return f"{url.rstrip('/')}/{PREFIX}/{model_id}"


def cache_folder(ws: Any, model_id: str) -> Path:
    return Path(ws.cache_dir) / "packages" / model_id


def _files(folder: Path) -> list[str]:
    """Relative POSIX paths of a package's files (hidden and temporary ones left out)."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(p.startswith(".") for p in rel.parts):
            continue
        if path.name.endswith(".tmp"):
            continue
        out.append(rel.as_posix())
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def publish(ws: Any, model_id: str, folder: str | os.PathLike[str]) -> int | None:
    """Upload ``folder`` (the package of ``model_id``) to the blob store; only files whose
    sha256 changed since the last upload are sent. The number uploaded, ``None`` when the
    blob store is local (nothing to do)."""
    prefix = remote_prefix(ws, model_id)
    folder = Path(folder)
    if prefix is None or not (folder / "model.json").is_file():
        return None
    fs, base = storage.filesystem(prefix)
    with storage.translate_errors(prefix):
        old = _remote_manifest(fs, base)
        files: dict[str, dict[str, Any]] = {}
        sent = 0
        for rel in _files(folder):
            sha = _sha256(folder / rel)
            files[rel] = {"sha256": sha, "size": (folder / rel).stat().st_size}
            if (old or {}).get("files", {}).get(rel, {}).get("sha256") == sha:
                continue
            fs.put_file(str(folder / rel), f"{base}/{rel}")
            sent += 1
        manifest = {"model": model_id, "files": files}
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        if sent or old != manifest:
            fs.pipe_file(f"{base}/{MANIFEST}", data)
    if folder.resolve().is_relative_to(Path(ws.cache_dir).resolve()):
        _write_atomic(folder / FETCHED, data)  # a fetched copy stays current
    return sent


def _remote_manifest(fs: Any, base: str) -> dict[str, Any] | None:
    try:
        data = fs.cat_file(f"{base}/{MANIFEST}")
    except FileNotFoundError:
        return None
    return json.loads(data)


def local_package(ws: Any, model_id: str, folder: str | os.PathLike[str]) -> Path:
    """The package folder of ``model_id`` on this machine: ``folder`` (its place in the
    workspace) when it is there, else a checked copy fetched from the blob store."""
    folder = Path(folder)
    if (folder / "model.json").is_file():
        return folder
    prefix = remote_prefix(ws, model_id)
    if prefix is None:
        return folder  # loaders report the missing package as before
    dest = cache_folder(ws, model_id)
    if (dest / FETCHED).is_file() and (dest / "model.json").is_file():
        return dest
    return fetch(ws, model_id)


def fetch(ws: Any, model_id: str) -> Path:
    """Download ``model_id``'s package from the blob store into the cache and check every
    file against the manifest; a ``ModelError`` naming the URL when it is not there."""
    prefix = remote_prefix(ws, model_id)
    if prefix is None:
        raise ModelError(f"model {model_id}: the blob store {ws.blobs.url} is local")
    fs, base = storage.filesystem(prefix)
    dest = cache_folder(ws, model_id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{model_id}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with storage.translate_errors(prefix):
            try:
                raw = fs.cat_file(f"{base}/{MANIFEST}")
            except FileNotFoundError:
                raise ModelError(
                    f"model {model_id}: its package is neither in the workspace nor at "
                    f"{prefix}/ (no {MANIFEST})"
                ) from None
            manifest = json.loads(raw)
            tmp.mkdir()
            for rel, want in sorted(manifest.get("files", {}).items()):
                target = tmp / rel
                if ".." in Path(rel).parts or Path(rel).is_absolute():
                    raise ModelError(f"{prefix}/{MANIFEST}: bad file name {rel!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{base}/{rel}", str(target))
                if target.stat().st_size != want["size"] or _sha256(target) != want["sha256"]:
                    raise ModelError(
                        f"{prefix}/{rel}: does not match the package manifest (changed or "
                        "truncated in the bucket)"
                    )
        (tmp / FETCHED).write_bytes(raw)
        _swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _swap_in(tmp: Path, dest: Path) -> None:
    """Move a checked copy into place; another process that got there first wins."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
        try:
            os.replace(dest, old)
        except OSError:
            return
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:
        if not (dest / FETCHED).is_file():
            raise


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
