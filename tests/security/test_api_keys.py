"""API keys: shown once, stored hashed, roles, revocation, the TTL cache."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from autovision.security import (
    ApiKeyError,
    KeyStore,
    create_key,
    has_keys,
    list_keys,
    revoke,
    role_allows,
    verify,
)
from autovision.workspace.db import ApiKeyRow

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def test_create_and_verify(workspace):
    assert not has_keys(workspace)
    key_id, key = create_key(workspace, "predict")
    assert has_keys(workspace)
    assert key.startswith("avk_") and len(key) > 40
    assert verify(workspace, key) == "predict"
    assert verify(workspace, key + "x") is None
    assert verify(workspace, "") is None
    assert verify(workspace, "x" * 10_000) is None
    with workspace.Session() as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.id == key_id))
    assert row.key_hash != key and key not in row.key_hash
    assert len(row.key_hash) == 64


def test_keys_are_unique(workspace):
    keys = {create_key(workspace, "admin")[1] for _ in range(5)}
    assert len(keys) == 5


def test_unknown_role(workspace):
    with pytest.raises(ApiKeyError):
        create_key(workspace, "root")


def test_revoke_and_list(workspace):
    key_id, key = create_key(workspace, "admin")
    revoke(workspace, key_id)
    assert verify(workspace, key) is None
    assert has_keys(workspace)  # stays locked after the last key is revoked
    (info,) = list_keys(workspace)
    assert info["id"] == key_id and info["revoked"] is True
    assert set(info) == {"id", "role", "created_at", "revoked"}
    with pytest.raises(ApiKeyError):
        revoke(workspace, "k-nope")


def test_roles():
    assert role_allows("admin", "admin") and role_allows("admin", "predict")
    assert role_allows("predict", "predict") and not role_allows("predict", "admin")


def test_key_store_cache(workspace):
    store = KeyStore(workspace, ttl=0.2)
    assert store.auth_enabled() is False
    key_id, key = create_key(workspace, "predict")
    assert store.lookup(key) == (key_id, "predict")  # misses are not cached: new keys work
    assert store.auth_enabled() is False  # cached for the TTL
    revoke(workspace, key_id)
    assert store.cached_lookup(key) == (key_id, "predict")
    time.sleep(0.25)
    assert store.lookup(key) is None
    assert store.auth_enabled() is True
    store.clear()
    assert store.cached_enabled() is None
