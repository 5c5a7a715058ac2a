"""Server settings: one pydantic-settings class, from arguments or ``AUTOVISION_SERVE_*``."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from autovision.data.decode import DEFAULT_MAX_PIXELS
from autovision.errors import AutovisionError

ENV_PREFIX = "AUTOVISION_SERVE_"


class ServingConfigError(AutovisionError):
    """The server cannot start with these settings (unsafe bind, missing TLS file...)."""


class ServerSettings(BaseSettings):
    """What ``autovision serve`` can be told; each field is ``AUTOVISION_SERVE_<NAME>`` too."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    workspace: str | None = None
    model_ids: list[str] = Field(default_factory=list)

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_instances: int = Field(64, ge=1, description="images in one request")
    max_decoded_bytes_per_image: int = Field(
        120_000_000, ge=1, description="pixels x channels x bytes per sample (40 MP RGB)"
    )
    max_decoded_bytes_per_request: int = Field(
        400_000_000, ge=1, description="the sum over a request's images, checked before any"
    )

    max_batch_size: int = Field(32, ge=1)
    max_batch_wait_ms: float = Field(5.0, ge=0)
    queue_limit: int = Field(256, ge=1, description="images admitted and not yet answered")
    request_timeout_s: float = Field(30.0, gt=0)
    retry_after_s: int = Field(1, ge=0)
    preprocess_threads: int | None = Field(None, ge=1, description="default: CPU count")
    ort_threads: int | None = Field(
        None, ge=1, description="ONNX Runtime threads of a lone batch (default: every core)"
    )
    ort_spinning: bool = Field(
        True, description="idle ONNX Runtime threads busy-wait: lower latency for a lone request"
    )
    inference_workers: int | None = Field(
        None,
        ge=1,
        description="batches run at once, single-threaded each, under load (default: CPU count "
        "on CPU, 1 on GPU)",
    )

    shadow: str | None = Field(
        None, description="a challenger model (id or NAME@VERSION) run beside every request"
    )
    shadow_rate: float = Field(1.0, ge=0, le=1, description="share of requests shadowed")
    shadow_queue_limit: int = Field(
        64, ge=1, description="challenger images waiting; more are dropped, never waited for"
    )
    shadow_seed: int = Field(0, description="seed of the per-request shadow-rate draw")
    shadow_priority: Literal["nice", "idle"] = Field(
        "nice",
        description="the challenger's threads: 'nice' (19) takes a small share under load; "
        "'idle' (SCHED_IDLE) only what nothing else wants, but a starved thread holding the "
        "GIL then stalls the champion (measured: p50 x2 at concurrency 1)",
    )
    log_predictions: bool = Field(True, description="record predictions (--no-log: off)")
    log_rate: float = Field(1.0, ge=0, le=1, description="share of requests logged")
    log_store_images: bool = Field(True, description="keep the images in the blob store")
    log_queue_limit: int = Field(
        1024, ge=1, description="requests waiting for the log writer; more are dropped"
    )
    retention: str | None = Field(
        "30d", description="prediction log records older than this are purged (daily)"
    )
    usage_flush_s: float = Field(
        60.0, gt=0, description="seconds between usage records of the served models"
    )
    alias_poll_s: float = Field(
        2.0, gt=0, description="how often a served alias is checked for a move (seconds)"
    )
    monitor_every_s: float = Field(
        900.0, ge=0, description="seconds between drift recomputations (the gauges); 0: off"
    )

    key_cache_ttl_s: float = Field(2.0, ge=0)
    auth: Literal["required", "auto", "off"] = Field(
        "auto",
        description="required: every prediction and admin route needs a key; auto: keys are "
        "needed once one exists; off: prediction routes are open (admin routes never are)",
    )
    insecure_no_auth: bool = False
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header names accepted besides the bound address ('*': any)",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) allowed to send POST/PUT/PATCH/DELETE "
        "besides the server's own",
    )
    admin_port: int | None = Field(
        None, ge=0, le=65535, description="serve /admin/* on this port only"
    )
    admin_host: str | None = Field(None, description="address of the admin port (default: host)")
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, for uvicorn worker processes."""
        out = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            out[ENV_PREFIX + name.upper()] = (
                json.dumps(value) if isinstance(value, list | dict | bool) else str(value)
            )
        return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_startup(settings: ServerSettings, *, auth_enabled: bool) -> None:
    """Refuse unsafe or impossible configurations before binding a socket."""
    if settings.auth == "required" and not auth_enabled:
        raise ServingConfigError(
            "--auth required but no API key exists: create one with "
            "`autovision keys create --role admin` (or --role predict)"
        )
    open_to_all = settings.auth == "off" or not auth_enabled
    if not is_loopback(settings.host) and open_to_all and not settings.insecure_no_auth:
        why = "with --auth off" if settings.auth == "off" else "without API keys"
        raise ServingConfigError(
            f"refusing to serve on {settings.host} {why}: create a key with "
            "`autovision keys create --role predict`, bind to 127.0.0.1, or pass "
            "--insecure-no-auth"
        )
    if settings.admin_port is not None:
        admin_host = settings.admin_host or settings.host
        if settings.admin_port == settings.port and admin_host == settings.host:
            raise ServingConfigError("--admin-port must differ from --port")
        if settings.workers > 1:
            raise ServingConfigError("--admin-port needs --workers 1")
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        raise ServingConfigError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for f in (settings.ssl_certfile, settings.ssl_keyfile):
        if f and not os.path.isfile(f):
            raise ServingConfigError(f"{f}: no such file")


def uvicorn_kwargs(settings: ServerSettings) -> dict[str, Any]:
    """uvicorn's arguments for the main port."""
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "access_log": False,  # the request-id middleware logs every request
        "timeout_graceful_shutdown": 10,
    }
    if settings.ssl_certfile:
        kwargs["ssl_certfile"] = settings.ssl_certfile
        kwargs["ssl_keyfile"] = settings.ssl_keyfile
    return kwargs


def admin_uvicorn_kwargs(settings: ServerSettings) -> dict[str, Any]:
    """uvicorn's arguments for the admin port: its own address, the same TLS files."""
    kwargs = uvicorn_kwargs(settings)
    kwargs.pop("workers")
    kwargs["host"] = settings.admin_host or settings.host
    kwargs["port"] = settings.admin_port
    return kwargs
