"""Content-addressed blob store (sha256) on any fsspec filesystem; local by default."""

from __future__ import annotations

import hashlib
import os
import uuid

import fsspec
from fsspec.core import url_to_fs


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """``put(bytes) -> sha256``; identical content is stored once, written atomically."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs: fsspec.AbstractFileSystem
        self.fs, self.root = url_to_fs(url)
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, sha: str) -> str:
        return f"{self.root}/{sha[:2]}/{sha}"

    def local_path(self, sha: str) -> str:
        """Path on disk (local stores only)."""
        return self._path(sha)

    def exists(self, sha: str) -> bool:
        return self.fs.exists(self._path(sha))

    def put(self, data: bytes, sha: str | None = None) -> str:
        sha = sha or sha256_bytes(data)
        path = self._path(sha)
        if self.fs.exists(path):
            return sha
        self.fs.makedirs(f"{self.root}/{sha[:2]}", exist_ok=True)
        if self.local:
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)
        return sha

    def get(self, sha: str) -> bytes:
        if self.local:
            with open(self._path(sha), "rb") as fh:
                return fh.read()
        return self.fs.cat_file(self._path(sha))
