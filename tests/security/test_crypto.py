"""AES-GCM encryption at rest: keys, the header, and the errors a user sees."""

from __future__ import annotations

import base64
import secrets

import pytest

from autovision.errors import EncryptionError, WorkspaceError
from autovision.security import crypto


@pytest.fixture
def key() -> crypto.Key:
    return crypto.Key(secrets.token_bytes(32))


def test_round_trip_with_header(key: crypto.Key) -> None:
    data = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(1000)
    sealed = crypto.encrypt(key, data, b"aad")
    assert sealed.startswith(crypto.MAGIC) and crypto.key_id_of(sealed) == key.id
    assert b"PNG" not in sealed and len(sealed) == len(data) + crypto.HEADER_BYTES + 16
    assert crypto.decrypt(key, sealed, b"aad") == data
    assert crypto.encrypt(key, data, b"aad") != sealed  # a fresh nonce every time


def test_wrong_key_names_both_key_ids(key: crypto.Key) -> None:
    other = crypto.Key(secrets.token_bytes(32))
    sealed = crypto.encrypt(key, b"secret", b"x")
    with pytest.raises(EncryptionError) as err:
        crypto.decrypt(other, sealed, b"x", what="blob abc")
    msg = str(err.value)
    assert key.id in msg and other.id in msg and "blob abc" in msg
    assert isinstance(err.value, WorkspaceError)


def test_no_key_says_how_to_set_one(key: crypto.Key) -> None:
    with pytest.raises(EncryptionError, match="encrypted .*AUTOVISION_ENCRYPTION_KEY"):
        crypto.decrypt(None, crypto.encrypt(key, b"secret", b"x"), b"x")


@pytest.mark.parametrize("where", ["body", "tag", "header-nonce"])
def test_tampered_ciphertext_is_refused(key: crypto.Key, where: str) -> None:
    sealed = bytearray(crypto.encrypt(key, b"some image bytes", b"x"))
    pos = {"body": crypto.HEADER_BYTES + 2, "tag": len(sealed) - 1, "header-nonce": 20}[where]
    sealed[pos] ^= 1
    with pytest.raises(EncryptionError, match="changed, damaged or swapped"):
        crypto.decrypt(key, bytes(sealed), b"x")


def test_other_associated_data_is_refused(key: crypto.Key) -> None:
    """A blob moved to another blob's address does not decrypt."""
    with pytest.raises(EncryptionError, match="swapped"):
        crypto.decrypt(key, crypto.encrypt(key, b"a", b"sha-1"), b"sha-2")


def test_keys_parse_from_base64_hex_and_raw_file(tmp_path) -> None:
    raw = secrets.token_bytes(32)
    k = crypto.Key(raw)
    assert crypto.parse_key(base64.b64encode(raw).decode()) == k
    assert crypto.parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == k
    assert crypto.parse_key(raw.hex() + "\n") == k
    assert crypto.parse_key(raw) == k  # 32 raw bytes in a key file
    assert crypto.parse_key(crypto.new_key()) != k
    assert raw.hex() not in repr(k)


@pytest.mark.parametrize("bad", ["", "short", base64.b64encode(b"x" * 16).decode(), "zz" * 32])
def test_bad_key_is_a_clear_error_without_the_value(bad: str) -> None:
    with pytest.raises(EncryptionError, match="not an encryption key") as err:
        crypto.parse_key(bad)
    assert not bad or bad not in str(err.value)


def test_configured_key_from_env_or_file(tmp_path) -> None:
    raw = secrets.token_bytes(32)
    assert crypto.configured_key({}) is None
    assert crypto.configured_key({crypto.ENV_KEY: raw.hex()}) == crypto.Key(raw)
    path = tmp_path / "av.key"
    path.write_text(base64.b64encode(raw).decode() + "\n")
    assert crypto.configured_key({crypto.ENV_KEY_FILE: str(path)}) == crypto.Key(raw)
    with pytest.raises(EncryptionError, match="not both"):
        crypto.configured_key({crypto.ENV_KEY: raw.hex(), crypto.ENV_KEY_FILE: str(path)})
    with pytest.raises(EncryptionError, match="cannot read the key file"):
        crypto.configured_key({crypto.ENV_KEY_FILE: str(tmp_path / "missing")})


def test_unknown_format_version(key: crypto.Key) -> None:
    sealed = bytearray(crypto.encrypt(key, b"x", b""))
    sealed[len(crypto.MAGIC)] = 9
    with pytest.raises(EncryptionError, match="format version 9"):
        crypto.decrypt(key, bytes(sealed), b"")


def test_files_are_written_encrypted_and_plain_ones_still_read(key, tmp_path) -> None:
    path = tmp_path / "f.bin"
    crypto.write_file(path, b"payload", b"f", key)
    assert b"payload" not in path.read_bytes()
    assert crypto.read_file(path, b"f", key) == b"payload"
    crypto.write_file(path, b"payload", b"f", None)
    assert path.read_bytes() == b"payload"
    assert crypto.read_file(path, b"f", key) == b"payload"  # migration: plaintext still reads
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
