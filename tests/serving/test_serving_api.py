"""The public surface of the serving and security packages, pinned."""

from __future__ import annotations

import inspect


def test_public_api():
    import autovision.security as security
    import autovision.serving as serving

    assert serving.__all__ == ["ServerSettings", "create_app"]
    assert sorted(security.__all__) == sorted(
        [
            "ROLES", "ApiKeyError", "AuditLog", "KeyStore", "create_key", "has_keys",
            "list_keys", "read_audit", "revoke", "role_allows", "verify",
        ]
    )  # fmt: skip
    params = inspect.signature(serving.create_app).parameters
    assert list(params) == ["source", "model_ids", "settings"]
    assert params["settings"].kind is inspect.Parameter.KEYWORD_ONLY


def test_settings_defaults_and_env(monkeypatch):
    from autovision.serving import ServerSettings

    s = ServerSettings()
    assert s.host == "127.0.0.1" and s.port == 8080 and s.workers == 1
    assert s.max_body_bytes == 10 * 1024 * 1024
    monkeypatch.setenv("AUTOVISION_SERVE_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("AUTOVISION_SERVE_MODEL_IDS", '["a", "b"]')
    s = ServerSettings()
    assert s.max_batch_size == 4 and s.model_ids == ["a", "b"]


def test_loopback_detection():
    from autovision.serving.settings import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")
