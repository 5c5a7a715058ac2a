"""Security: API keys with roles stored hashed, and the append-only audit log."""

from autovision.security.audit import AuditLog, read_audit
from autovision.security.keys import (
    ROLES,
    ApiKeyError,
    KeyStore,
    create_key,
    has_keys,
    list_keys,
    revoke,
    role_allows,
    verify,
)

__all__ = [
    "ROLES",
    "ApiKeyError",
    "AuditLog",
    "KeyStore",
    "create_key",
    "has_keys",
    "list_keys",
    "read_audit",
    "revoke",
    "role_allows",
    "verify",
]
