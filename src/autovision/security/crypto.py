"""Encryption at rest: AES-256-GCM with a key from ``AUTOVISION_ENCRYPTION_KEY`` (or the file
named by ``AUTOVISION_ENCRYPTION_KEY_FILE``), never stored in the workspace.

An encrypted file is ``MAGIC | version | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag``.
The header and a caller's ``aad`` (a blob's sha256, a model file's name) are authenticated,
so a wrong key, a swapped file or a changed byte is detected and named.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autovision.errors import EncryptionError

ENV_KEY = "AUTOVISION_ENCRYPTION_KEY"
ENV_KEY_FILE = "AUTOVISION_ENCRYPTION_KEY_FILE"
MAGIC = b"AVENC"
VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES + NONCE_BYTES
_SET_KEY = f"set {ENV_KEY} (or {ENV_KEY_FILE}, or --key-file) to the key it was written with"


@dataclass(frozen=True)
class Key:
    """A 32-byte AES-256 key; ``id`` is a short hash that names it in errors (not secret)."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise EncryptionError(
                f"an encryption key is {KEY_BYTES} bytes; this one is {len(self.secret)}"
            )

    @property
    def id_bytes(self) -> bytes:
        return hashlib.sha256(b"autovision-key-id\0" + self.secret).digest()[:KEY_ID_BYTES]

    @property
    def id(self) -> str:
        return self.id_bytes.hex()


def new_key() -> str:
    """A fresh random key, base64 text (what ``AUTOVISION_ENCRYPTION_KEY`` takes)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(value: str | bytes, *, where: str = ENV_KEY) -> Key:
    """A key from 64 hex digits or base64 (standard or URL-safe) of 32 bytes; a key file may
    also hold the 32 raw bytes. The error names ``where``, never the value."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return Key(binascii.unhexlify(text))
        except (binascii.Error, ValueError):
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            secret = decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(secret) == KEY_BYTES:
            return Key(secret)
    if isinstance(value, bytes) and len(raw) == KEY_BYTES:
        return Key(raw)
    raise EncryptionError(
        f"{where}: not an encryption key (expected {KEY_BYTES} random bytes as base64 or "
        "64 hex digits; make one with `autovision encryption new-key`)"
    )


def configured_key(env: Mapping[str, str] | None = None) -> Key | None:
    """The key of ``AUTOVISION_ENCRYPTION_KEY`` or ``AUTOVISION_ENCRYPTION_KEY_FILE``; ``None``
    when neither is set (nothing is encrypted then)."""
    env = os.environ if env is None else env
    value, path = env.get(ENV_KEY), env.get(ENV_KEY_FILE)
    if value and path:
        raise EncryptionError(f"set {ENV_KEY} or {ENV_KEY_FILE}, not both")
    if value:
        return parse_key(value)
    if path:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise EncryptionError(
                f"{ENV_KEY_FILE}: cannot read the key file {path}: {exc.strerror or exc}"
            ) from None
        return parse_key(data, where=f"key file {path}")
    return None


def is_encrypted(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def key_id_of(data: bytes) -> str:
    """The id of the key ``data`` was encrypted with."""
    start = len(MAGIC) + 1
    return data[start : start + KEY_ID_BYTES].hex()


def encrypt(key: Key, data: bytes, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = MAGIC + bytes([VERSION]) + key.id_bytes + secrets.token_bytes(NONCE_BYTES)
    return header + AESGCM(key.secret).encrypt(header[-NONCE_BYTES:], data, header + aad)


def decrypt(key: Key | None, data: bytes, aad: bytes, *, what: str = "data") -> bytes:
    """Plaintext of ``encrypt``'s output; :class:`EncryptionError` naming ``what`` and both key
    ids when the key is missing or wrong, or when the data was changed."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(data) < HEADER_BYTES + 16 or not is_encrypted(data):
        raise EncryptionError(f"{what}: not encrypted data, or cut short")
    if data[len(MAGIC)] != VERSION:
        raise EncryptionError(
            f"{what}: encryption format version {data[len(MAGIC)]}, this autovision reads "
            f"version {VERSION}"
        )
    written_with = key_id_of(data)
    if key is None:
        raise EncryptionError(
            f"{what} is encrypted (key id {written_with}) and no key is configured: {_SET_KEY}"
        )
    if key.id != written_with:
        raise EncryptionError(
            f"{what} was encrypted with key id {written_with}; the configured key is "
            f"{key.id}: {_SET_KEY}"
        )
    header = data[:HEADER_BYTES]
    try:
        return AESGCM(key.secret).decrypt(header[-NONCE_BYTES:], data[HEADER_BYTES:], header + aad)
    except InvalidTag:
        raise EncryptionError(
            f"{what}: decryption failed (authentication tag mismatch): the file was changed, "
            "damaged or swapped with another"
        ) from None


def seal(key: Key | None, data: bytes, aad: bytes) -> bytes:
    """``data`` encrypted when a key is given, else unchanged."""
    return data if key is None else encrypt(key, data, aad)


def unseal(key: Key | None, data: bytes, aad: bytes, *, what: str = "data") -> bytes:
    """Plaintext of ``data``, encrypted or not (plaintext written before a key was set stays
    readable, so a workspace can be migrated)."""
    return decrypt(key, data, aad, what=what) if is_encrypted(data) else data


def write_file(path: str | os.PathLike[str], data: bytes, aad: bytes, key: Key | None) -> None:
    """Write ``data`` (encrypted when ``key`` is given) to ``path``: a temporary file, then
    rename, so the plaintext is never on disk when encrypting."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(seal(key, data, aad))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_file(path: str | os.PathLike[str], aad: bytes, key: Key | None) -> bytes:
    """Plaintext of a file written by :func:`write_file` (or a plain one)."""
    return unseal(key, Path(path).read_bytes(), aad, what=str(path))
