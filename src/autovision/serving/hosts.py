"""Which ``Host`` and ``Origin`` headers a server accepts: the defence against DNS
rebinding (a foreign name resolving to our address) and cross-site requests from a page
in the user's browser. Checked in the middleware, so every route is covered."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WILDCARD_BINDS = {"0.0.0.0", "::", ""}


def _normal(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"name:port"``, ``"[v6]:port"`` or a bare name as ``(name, port)``; None if malformed."""
    value = value.strip()
    if not value or any(c in value for c in "/@?# \t\\"):
        return None
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
        return (_normal(name), port) if _is_ip(name) else None
    if value.count(":") == 1:
        value, _, p = value.partition(":")
        if not p.isdigit():
            return None
        port = int(p)
    elif ":" in value:  # a bare IPv6 address is not a valid Host header
        return None
    return (_normal(value), port) if value else None


@dataclass(frozen=True)
class HostPolicy:
    """The names a ``Host`` header may carry, and the origins allowed to change state."""

    names: frozenset[str]
    any_ip: bool = False
    any_host: bool = False
    origins: frozenset[str] = frozenset()

    @classmethod
    def for_bind(
        cls, host: str, extra: list[str] | tuple[str, ...] = (), origins: list[str] = ()
    ) -> HostPolicy:
        """Defaults: the bound address; ``localhost``/``127.0.0.1``/``[::1]`` on loopback;
        any IP literal on a wildcard bind (0.0.0.0, ::); plus the ``extra`` names."""
        from autovision.serving.settings import is_loopback

        bind = _normal(host)
        names = {bind, *(_normal(n) for n in extra if n.strip() != "*")}
        if is_loopback(host):
            names.update(LOOPBACK_NAMES)
        return cls(
            names=frozenset(names - {""}),
            any_ip=bind in _WILDCARD_BINDS,
            any_host="*" in (n.strip() for n in extra),
            origins=frozenset(o for o in (normal_origin(x) for x in origins) if o),
        )

    def host_allowed(self, name: str) -> bool:
        return self.any_host or name in self.names or (self.any_ip and _is_ip(name))

    def origin_allowed(self, origin: str, scheme: str, host: tuple[str, int | None]) -> bool:
        """An ``Origin`` may change state when it is the server's own origin (the request's
        scheme, host and port) or a configured one; ``null`` and garbage never are."""
        own = _origin_tuple(scheme, *host)
        seen = normal_origin(origin)
        return seen is not None and (seen == own or seen in self.origins)


def _origin_tuple(scheme: str, name: str, port: int | None) -> str:
    port = port if port is not None else _DEFAULT_PORTS.get(scheme)
    shown = f"[{name}]" if ":" in name else name
    return f"{scheme}://{shown}:{port}"


def normal_origin(origin: str) -> str | None:
    """``scheme://host:port`` with the default port made explicit, or None if not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return _origin_tuple(parts.scheme, _normal(parts.hostname), port)
