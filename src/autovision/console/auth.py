"""Who may use the console and what each may do: users with argon2id password hashes,
sessions stored by the hash of their cookie token, the one-time login token that
``autovision console`` prints, CSRF tokens, and the table of role actions.

Nothing secret is stored in the clear: the DB holds the argon2 hash of each password and the
SHA-256 of each session token; the login token lives (hashed) in the console process only.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select

from autovision.errors import AutovisionError
from autovision.security.audit import acting_as, audit_event
from autovision.workspace.db import ConsoleSessionRow, ConsoleUserRow

ROLES = ("admin", "trainer", "reviewer", "viewer")
"""Most to least powerful; ``reviewer`` and ``trainer`` are not a chain (see ACTIONS)."""

ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "dataset.import": frozenset({"admin", "trainer"}),
    "dataset.import_server_path": frozenset({"admin"}),
    "dataset.edit": frozenset({"admin", "trainer"}),
    "train.start": frozenset({"admin", "trainer"}),
    "label": frozenset({"admin", "trainer", "reviewer"}),
    "review": frozenset({"admin", "reviewer"}),
    "deploy": frozenset({"admin"}),
    "users": frozenset({"admin"}),
}
"""Each action a route may require, and the roles allowed it. A new page adds its actions
here (and a line to the test of this table); an unknown action is refused to everyone."""

SESSION_HOURS = 12.0
IDLE_HOURS = 4.0
LOGIN_TOKEN_SECONDS = 600.0
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SEEN_EVERY = timedelta(seconds=60)  # last_seen is written at most this often
_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters
# verified against when the user does not exist, so a wrong name costs the same time
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class ConsoleAuthError(AutovisionError):
    """A console user cannot be created, changed or logged in (the message says why)."""


@dataclass(frozen=True)
class User:
    """The user of a request: ``name`` (``local:NAME`` for the one-time token's session),
    ``role``, and the session's ``csrf`` token."""

    name: str
    role: str
    csrf: str = ""
    session_id: str = ""

    def can(self, action: str) -> bool:
        return role_allows(self.role, action)


def role_allows(role: str, action: str) -> bool:
    """True when ``role`` may do ``action`` (unknown roles and actions: never)."""
    return role in ACTIONS.get(action, frozenset())


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConsoleAuthError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def check_user_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ConsoleAuthError(
            f"invalid user name {name!r}: letters, digits, '.', '_' or '-' (up to 64 "
            "characters, starting with a letter or digit)"
        )
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConsoleAuthError(f"the password is too short: at least {MIN_PASSWORD} characters")
    return password


# ---- users -----------------------------------------------------------------------------


def has_users(ws: Any) -> bool:
    """Whether any enabled password login exists (needed to bind a non-loopback address)."""
    with ws.Session() as s:
        return s.scalar(select(ConsoleUserRow.name).where(~ConsoleUserRow.disabled)) is not None


def list_users(ws: Any) -> list[dict[str, Any]]:
    with ws.Session() as s:
        rows = s.scalars(select(ConsoleUserRow).order_by(ConsoleUserRow.name))
        return [
            {
                "name": r.name,
                "role": r.role,
                "disabled": r.disabled,
                "created_at": _aware(r.created_at).isoformat(),
            }
            for r in rows
        ]


def create_user(ws: Any, name: str, role: str, password: str) -> dict[str, Any]:
    """A new password login; refuses a name that exists (disabled or not)."""
    check_user_name(name)
    check_role(role)
    _check_password(password)
    with ws.Session() as s:
        if s.get(ConsoleUserRow, name) is not None:
            raise ConsoleAuthError(f"console user {name!r} exists (use `autovision users passwd`)")
        s.add(ConsoleUserRow(name=name, role=role, password_hash=_hasher.hash(password)))
        s.commit()
    audit_event(ws, "console.user.create", name=name, role=role)
    return {"name": name, "role": role}


def _existing(s: Any, name: str) -> ConsoleUserRow:
    row = s.get(ConsoleUserRow, name)
    if row is None:
        raise ConsoleAuthError(f"no console user named {name!r} (see `autovision users list`)")
    return row


def disable_user(ws: Any, name: str) -> None:
    """Disable a login and end its sessions at once."""
    with ws.Session() as s:
        _existing(s, name).disabled = True
        s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user == name))
        s.commit()
    audit_event(ws, "console.user.disable", name=name)


def set_password(ws: Any, name: str, password: str) -> None:
    """A new password (enables a disabled user); the user's sessions end."""
    _check_password(password)
    with ws.Session() as s:
        row = _existing(s, name)
        row.password_hash = _hasher.hash(password)
        row.disabled = False
        s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user == name))
        s.commit()
    audit_event(ws, "console.user.passwd", name=name)


def authenticate(ws: Any, name: str, password: str) -> User | None:
    """The user when ``name`` and ``password`` match an enabled login, else None (the same
    argon2 work either way, so timing does not tell which names exist)."""
    with ws.Session() as s:
        row = s.get(ConsoleUserRow, name) if _NAME.match(name or "") else None
        stored = row.password_hash if row is not None else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled:
            return None
        if _hasher.check_needs_rehash(row.password_hash):
            row.password_hash = _hasher.hash(password)
            s.commit()
        return User(name=row.name, role=row.role)


# ---- sessions --------------------------------------------------------------------------


def create_session(ws: Any, user: str, role: str) -> tuple[str, User]:
    """A new session: ``(cookie token, user)``; only the token's hash is stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = _now()
    sid = token_hash(token)
    with ws.Session() as s:
        s.add(
            ConsoleSessionRow(
                id=sid,
                user=user,
                role=role,
                csrf=csrf,
                created_at=now,
                expires_at=now + timedelta(hours=SESSION_HOURS),
                last_seen=now,
            )
        )
        s.commit()
    return token, User(name=user, role=role, csrf=csrf, session_id=sid)


def session_user(ws: Any, token: str | None) -> User | None:
    """The user of a session cookie, or None when unknown, expired, idle too long, or its
    password user has been disabled. A password user's current role wins over the one
    stored with the session."""
    if not token or len(token) > 128:
        return None
    sid = token_hash(token)
    now = _now()
    with ws.Session() as s:
        row = s.get(ConsoleSessionRow, sid)
        if row is None:
            return None
        if (
            _aware(row.expires_at) <= now
            or _aware(row.last_seen) + timedelta(hours=IDLE_HOURS) <= now
        ):
            s.delete(row)
            s.commit()
            return None
        role = row.role
        if not row.user.startswith("local:"):
            account = s.get(ConsoleUserRow, row.user)
            if account is None or account.disabled:
                s.delete(row)
                s.commit()
                return None
            role = account.role
        if now - _aware(row.last_seen) > _SEEN_EVERY:
            row.last_seen = now
            s.commit()
        return User(name=row.user, role=role, csrf=row.csrf, session_id=sid)


def end_session(ws: Any, token: str | None) -> None:
    if not token:
        return
    with ws.Session() as s:
        s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.id == token_hash(token)))
        s.commit()


def purge_sessions(ws: Any) -> int:
    """Remove expired sessions (at console start); returns how many."""
    with ws.Session() as s:
        n = s.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= _now()))
        s.commit()
        return int(n.rowcount or 0)


def csrf_ok(user: User, sent: str | None) -> bool:
    """Constant-time comparison of the token a request sent with its session's."""
    return bool(sent) and bool(user.csrf) and hmac.compare_digest(sent, user.csrf)


# ---- the one-time login token ----------------------------------------------------------


class LoginTokens:
    """One-time tokens for the URL ``autovision console`` prints (as Jupyter does): each is
    valid for ``LOGIN_TOKEN_SECONDS``, kept as its hash, and gone at first use. It gives an
    admin session for the local user who started the console (``local:NAME``)."""

    def __init__(self, ttl_s: float = LOGIN_TOKEN_SECONDS) -> None:
        self.ttl_s = ttl_s
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token_hash(token)] = time.monotonic() + self.ttl_s
        return token

    def consume(self, token: str | None) -> bool:
        if not token or len(token) > 128:
            return False
        now = time.monotonic()
        with self._lock:
            self._tokens = {h: t for h, t in self._tokens.items() if t > now}
            return self._tokens.pop(token_hash(token), None) is not None


def local_user_name() -> str:
    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        who = "owner"
    return f"local:{who}"


def audit_as(user: User):
    """``with audit_as(user): library_call(...)``: the library's audit lines carry the user."""
    return acting_as(user=user.name, role=user.role, client="console", via="console")
