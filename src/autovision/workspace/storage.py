"""fsspec access to local files and object storage, with one place that reads the endpoint
and credentials: every ``s3://`` read or write of autovision (blobs, packages, import
sources, batch-prediction inputs and outputs) goes through :func:`filesystem` or
:func:`open_url`.

``AUTOVISION_S3_ENDPOINT`` (then ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``) names an
S3-compatible server (MinIO, Ceph, moto); credentials and region come from the usual
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``/``AWS_PROFILE``/
``AWS_DEFAULT_REGION`` variables, read by botocore itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from autovision.errors import StorageError

ENV_S3_ENDPOINT = "AUTOVISION_S3_ENDPOINT"
S3_SCHEMES = frozenset({"s3", "s3a"})
# Endpoint variables, first set wins.
_ENDPOINT_VARS = (ENV_S3_ENDPOINT, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")

__all__ = [
    "ENV_S3_ENDPOINT",
    "filesystem",
    "is_remote",
    "local_then_upload",
    "open_url",
    "read_bytes",
    "s3_endpoint",
    "scheme",
    "storage_error",
    "storage_options",
    "translate_errors",
]


def scheme(url: str) -> str:
    """``s3`` for ``s3://b/k``; ``file`` for a plain path."""
    head, sep, _ = str(url).partition("://")
    return head.lower() if sep and len(head) > 1 else "file"


def is_remote(url: str) -> bool:
    """True for a URL that is not on the local disk (``s3://``, ``gs://``, ``memory://``...)."""
    return scheme(url) not in ("file", "local")


def s3_endpoint() -> str | None:
    """The S3 endpoint URL of the environment, or ``None`` (AWS itself)."""
    for var in _ENDPOINT_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def storage_options(url: str) -> dict[str, Any]:
    """fsspec keyword arguments for ``url`` (``fsspec.open(url, **storage_options(url))``).

    For ``s3://``: ``endpoint_url`` when an endpoint variable is set; credentials are left to
    botocore's own chain. Other schemes: ``{}``. The dict is new on every call.
    """
    if scheme(url) not in S3_SCHEMES:
        return {}
    options: dict[str, Any] = {}
    endpoint = s3_endpoint()
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``url``, configured by
    :func:`storage_options`; a plain path gives the local filesystem."""
    from fsspec.core import url_to_fs

    with translate_errors(url):
        return url_to_fs(str(url), **storage_options(url))


@contextmanager
def open_url(url: str, mode: str = "rb") -> Iterator[IO[bytes]]:
    """``fsspec.open(url, mode)`` with the storage options; errors of the store (no
    credentials, no bucket, no endpoint) become one-line :class:`StorageError`.
    ``FileNotFoundError`` of a missing object stays as it is."""
    import fsspec

    with translate_errors(url), fsspec.open(str(url), mode, **storage_options(url)) as fh:
        yield fh


@contextmanager
def local_then_upload(url: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A local path to write ``url``'s content to: ``url`` itself for a local target, else a
    temporary file uploaded to ``url`` when the block ends without an error."""
    text = os.fspath(url)
    if not is_remote(text):
        yield Path(text).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="autovision-upload-") as tmp:
        local = Path(tmp) / (text.rstrip("/").rsplit("/", 1)[-1] or f"upload{suffix}")
        yield local
        fs, path = filesystem(text)
        with translate_errors(text):
            fs.put_file(str(local), path)


def read_bytes(url: str, limit: int | None = None) -> bytes:
    """The bytes of one object in a single request (``limit``: at most that many, a ranged
    read); errors as :func:`open_url`."""
    fs, path = filesystem(url)
    with translate_errors(url):
        if limit is None:
            return fs.cat_file(path)
        return fs.cat_file(path, start=0, end=limit)


def storage_error(url: str, exc: BaseException) -> StorageError | None:
    """The :class:`StorageError` for a failure of the store itself, or ``None`` for an
    ordinary file error (a missing object) that callers handle as today."""
    name = type(exc).__name__
    text = str(exc)
    endpoint = s3_endpoint()
    where = f" at {endpoint}" if endpoint else ""
    if (
        name in ("NoCredentialsError", "PartialCredentialsError")
        or "Unable to locate credentials" in text
    ):
        return StorageError(
            f"{url}: no credentials for the object store: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError") or (
        "Could not connect to the endpoint" in text
    ):
        return StorageError(
            f"{url}: cannot reach the object store{where or ' (AWS)'}: check "
            f"{ENV_S3_ENDPOINT} or AWS_ENDPOINT_URL"
        )
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return StorageError(f"{url}: the bucket {_bucket(url)!r} does not exist{where}")
    if name in ("InvalidAccessKeyId", "SignatureDoesNotMatch") or any(
        code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch")
    ):
        return StorageError(f"{url}: the object store refused the credentials{where}")
    if isinstance(exc, PermissionError) and is_remote(url):
        return StorageError(f"{url}: access denied by the object store{where}")
    return None


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn the store's own failures inside the block into :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        if not is_remote(url):
            raise
        err = storage_error(url, exc)
        if err is None:
            raise
        raise err from None


def _bucket(url: str) -> str:
    return str(url).partition("://")[2].split("/", 1)[0]
