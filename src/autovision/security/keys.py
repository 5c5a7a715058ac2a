"""API keys: random tokens shown once, stored as SHA-256 hashes in the workspace DB.

A key is ``avk_`` + 43 URL-safe characters (256 random bits), so a plain SHA-256 is a
safe hash: nothing to brute-force. Roles: ``predict`` may call prediction routes (and send
feedback), ``reviewer`` the review queue only (read, images, label; never models, keys or
datasets), ``admin`` everything. Once any key has been created (even if later revoked)
the server requires a key, so revoking the last key locks the server rather than opening it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Any

from sqlalchemy import select

from autovision.errors import AutovisionError
from autovision.workspace.db import ApiKeyRow

ROLES = ("predict", "reviewer", "admin")
KEY_PREFIX = "avk_"


class ApiKeyError(AutovisionError):
    """An API key operation is invalid (unknown role, unknown key id)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def role_allows(role: str, required: str) -> bool:
    """``admin`` can do everything; ``predict`` and ``reviewer`` only what needs that role."""
    return role == "admin" or role == required


def create_key(ws: Any, role: str) -> tuple[str, str]:
    """Create a key with ``role``; returns ``(id, key)``. The key itself is never stored."""
    if role not in ROLES:
        raise ApiKeyError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    key_id = f"k-{secrets.token_hex(6)}"
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with ws.Session.begin() as s:
        s.add(ApiKeyRow(id=key_id, role=role, key_hash=hash_key(key)))
    return key_id, key


def lookup(ws: Any, key: str) -> tuple[str, str] | None:
    """``(id, role)`` of an active key, or None."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    with ws.Session() as s:
        row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(key)))
        if row is None or row.revoked:
            return None
        return row.id, row.role


def verify(ws: Any, key: str) -> str | None:
    """The role of an active key, or None for an unknown or revoked key."""
    found = lookup(ws, key)
    return found[1] if found else None


def revoke(ws: Any, key_id: str) -> None:
    with ws.Session.begin() as s:
        row = s.get(ApiKeyRow, key_id)
        if row is None:
            raise ApiKeyError(f"no API key with id {key_id!r}")
        row.revoked = True


def list_keys(ws: Any) -> list[dict[str, Any]]:
    """Id, role, creation time and state of every key (never the hash)."""
    with ws.Session() as s:
        rows = s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
        return [
            {
                "id": r.id,
                "role": r.role,
                "created_at": r.created_at.isoformat(),
                "revoked": bool(r.revoked),
            }
            for r in rows
        ]


def has_keys(ws: Any) -> bool:
    """True once any key was created: authentication is then required."""
    with ws.Session() as s:
        return s.scalar(select(ApiKeyRow.id).limit(1)) is not None


class KeyStore:
    """Per-request key checks against the DB with a short TTL cache.

    New keys work at once (misses are not cached); revocations and the switch from open
    to authenticated take effect within ``ttl`` seconds, without a restart.
    """

    def __init__(self, ws: Any, ttl: float = 2.0) -> None:
        self.ws = ws
        self.ttl = ttl
        self._lock = threading.Lock()
        self._hits: dict[str, tuple[float, tuple[str, str]]] = {}
        self._enabled: tuple[float, bool] | None = None

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()
            self._enabled = None

    def cached_enabled(self) -> bool | None:
        """Whether authentication is on, if known within the TTL (no I/O)."""
        with self._lock:
            if self._enabled is not None and time.monotonic() < self._enabled[0]:
                return self._enabled[1]
        return None

    def auth_enabled(self) -> bool:
        cached = self.cached_enabled()
        if cached is not None:
            return cached
        enabled = has_keys(self.ws)
        with self._lock:
            self._enabled = (time.monotonic() + self.ttl, enabled)
        return enabled

    def cached_lookup(self, key: str) -> tuple[str, str] | None:
        """A valid key seen within the TTL (no I/O); None means "ask :meth:`lookup`"."""
        with self._lock:
            hit = self._hits.get(hash_key(key))
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        return None

    def lookup(self, key: str) -> tuple[str, str] | None:
        """``(id, role)`` of an active key, or None."""
        hit = self.cached_lookup(key)
        if hit is not None:
            return hit
        found = lookup(self.ws, key)
        if found is not None:
            with self._lock:
                self._hits[hash_key(key)] = (time.monotonic() + self.ttl, found)
        return found
