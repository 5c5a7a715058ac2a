"""Content-addressed blob store (sha256 of the plaintext) on any fsspec filesystem; local by
default. With an encryption key (``AUTOVISION_ENCRYPTION_KEY``) blobs are AES-GCM encrypted,
bound to their sha256, and decrypted on ``get``; plaintext blobs stay readable."""

from __future__ import annotations

import hashlib
import os
import uuid

import fsspec

from autovision.security import crypto
from autovision.workspace import storage

FROM_ENV = object()  # BlobStore(key=FROM_ENV): the key of the environment, or none


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """``put(bytes) -> sha256``; identical content is stored once, written atomically.

    ``key``: a :class:`~autovision.security.crypto.Key`, ``None`` (no encryption) or, by
    default, the configured one (worker processes building their own store get it too).
    """

    def __init__(self, url: str, *, key: crypto.Key | None | object = FROM_ENV) -> None:
        self.url = url
        self.key: crypto.Key | None = (
            crypto.configured_key() if key is FROM_ENV else key  # type: ignore[assignment]
        )
        self.fs: fsspec.AbstractFileSystem
        self.fs, self.root = storage.filesystem(url)
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        if self.local:  # on S3 a makedirs would create a missing bucket instead of failing
            self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, sha: str) -> str:
        return f"{self.root}/{sha[:2]}/{sha}"

    def local_path(self, sha: str) -> str:
        """Path on disk (local stores only); its bytes are encrypted when a key is set."""
        return self._path(sha)

    def exists(self, sha: str) -> bool:
        with storage.translate_errors(self.url):
            return self.fs.exists(self._path(sha))

    def put(self, data: bytes, sha: str | None = None) -> str:
        sha = sha or sha256_bytes(data)
        path = self._path(sha)
        with storage.translate_errors(self.url):
            if self.fs.exists(path):
                return sha
            if self.local:
                self.fs.makedirs(f"{self.root}/{sha[:2]}", exist_ok=True)
            data = crypto.seal(self.key, data, sha.encode())
            self._write(path, data)
        return sha

    def _write(self, path: str, data: bytes) -> None:
        if self.local:
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def get(self, sha: str) -> bytes:
        return crypto.unseal(self.key, self.get_raw(sha), sha.encode(), what=f"blob {sha}")

    def get_raw(self, sha: str) -> bytes:
        """The stored bytes (ciphertext when encrypted)."""
        if self.local:
            with open(self._path(sha), "rb") as fh:
                return fh.read()
        with storage.translate_errors(self.url):
            return self.fs.cat_file(self._path(sha))

    def delete(self, sha: str) -> bool:
        """Remove one blob; False when it was not there."""
        path = self._path(sha)
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            return False
        return True

    def encrypt_existing(self) -> int:
        """Encrypt every plaintext blob in place with the store's key; the number encrypted."""
        if self.key is None:
            from autovision.errors import EncryptionError

            raise EncryptionError(f"no encryption key configured: set {crypto.ENV_KEY}")
        done = 0
        for path in self.fs.find(self.root):
            sha = path.rsplit("/", 1)[-1]
            if len(sha) != 64 or path.endswith(".tmp"):
                continue
            data = self.get_raw(sha)
            if crypto.is_encrypted(data):
                continue
            if sha256_bytes(data) != sha:
                continue  # not a blob of ours: left alone
            self._write(self._path(sha), crypto.encrypt(self.key, data, sha.encode()))
            done += 1
        return done
