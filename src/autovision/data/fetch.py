"""Read the bytes an import row names, within limits: only regular local files, http(s) only
through a fetcher that refuses private addresses, object stores through fsspec.

A hostile CSV can name ``/dev/zero``, a FIFO or ``http://127.0.0.1:PORT/admin``: every read
here is bounded in size and time and refused before it reaches what the user did not allow.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import socket
import ssl
import stat
import time
from urllib.parse import urljoin, urlsplit

from autovision.data import problems as P
from autovision.errors import DatasetError

DEFAULT_MAX_FILE_MB = 30.0  # Vertex AI's training limit per image
DEFAULT_TIMEOUT_S = 30.0
MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_REDIRECTS = (301, 302, 303, 307, 308)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


class ReadRefused(DatasetError):
    """A row's file or URL was not read; ``reason`` is a problem reason of
    :mod:`autovision.data.problems`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ---- local files -------------------------------------------------------------------------


def read_local(path: str, max_bytes: int, *, nofollow: bool = True) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (refused from its size first).

    Opened non-blocking (a FIFO cannot hang us) and, for an already resolved path, without
    following a link swapped in since; devices, FIFOs and sockets are refused after ``fstat``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and nofollow:
            raise ReadRefused(P.PATH_NOT_ALLOWED, "the file became a link") from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            raise ReadRefused(
                P.NOT_A_REGULAR_FILE,
                f"not a regular file ({_kind(st.st_mode)}); only regular files are read",
            )
        if st.st_size > max_bytes:
            raise ReadRefused(P.FILE_TOO_LARGE, _too_large(max_bytes, st.st_size))
        os.set_blocking(fd, True)
        data = _read_at_most(fh, max_bytes + 1)
    if len(data) > max_bytes:
        raise ReadRefused(P.FILE_TOO_LARGE, _too_large(max_bytes))
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def _read_at_most(fh, limit: int, deadline: float | None = None) -> bytes:
    parts: list[bytes] = []
    got = 0
    read = getattr(fh, "read1", fh.read)  # what has arrived: a slow drip meets the deadline
    while got < limit:
        chunk = read(min(_CHUNK, limit - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise ReadRefused(P.UNREADABLE, "download took longer than the timeout")
    return b"".join(parts)


def _too_large(limit: int, size: int | None = None) -> str:
    mb = limit / 1e6
    if size is None:
        return f"file is over the limit of {mb:g} MB (--max-file-mb)"
    return f"file of {size} bytes is over the limit of {mb:g} MB (--max-file-mb)"


# ---- addresses ---------------------------------------------------------------------------


def blocked_address(address: str) -> str | None:
    """Why an IP address may not be fetched from (loopback, private...), or None if public.

    IPv4-mapped, 6to4 and NAT64 IPv6 addresses are judged by the IPv4 address they carry.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in ipaddress.ip_network("64:ff9b::/96"):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            why = blocked_address(str(inner))
            return why and f"{why} (via {ip})"
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attr, name in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(ip, attr):
            return f"a {name} address"
    if not ip.is_global:
        return "not a public address"
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (one DNS lookup; the fetch connects to these)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int) -> str:
    """The address to connect to; refused when any address of ``host`` is not public."""
    try:
        addresses = resolve_host(host, port)
    except (OSError, UnicodeError) as exc:
        raise ReadRefused(P.MISSING_FILE, f"cannot resolve host {host!r}: {exc}") from None
    if not addresses:
        raise ReadRefused(P.MISSING_FILE, f"host {host!r} has no address")
    for address in addresses:
        why = blocked_address(address)
        if why:
            raise ReadRefused(
                P.URL_NOT_ALLOWED, f"host {host!r} resolves to {address}, {why}; not fetched"
            )
    return addresses[0]


# ---- http(s) -----------------------------------------------------------------------------


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to a checked address while the Host header keeps the name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate and SNI are checked against the name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_http(url: str, max_bytes: int, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """GET an http(s) URL with the address checked before each connection (redirects too)."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReadRefused(P.URL_NOT_ALLOWED, f"{url!r}: only http(s) URLs are fetched")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ReadRefused(P.URL_NOT_ALLOWED, f"{url!r}: invalid port") from None
        address = check_host(parts.hostname, port)
        cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        conn = cls(parts.hostname, port, address, timeout)
        try:
            path = parts.path or "/"
            conn.request("GET", path + (f"?{parts.query}" if parts.query else ""))
            resp = conn.getresponse()
            if resp.status in _REDIRECTS and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location"))
                continue
            if resp.status == 404:
                raise FileNotFoundError(url)
            if resp.status != 200:
                raise ReadRefused(P.UNREADABLE, f"HTTP {resp.status} {resp.reason}")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ReadRefused(P.FILE_TOO_LARGE, _too_large(max_bytes, int(length)))
            data = _read_at_most(resp, max_bytes + 1, deadline)
        except TimeoutError:
            raise ReadRefused(P.UNREADABLE, f"no answer within {timeout:g} s") from None
        finally:
            conn.close()
        if len(data) > max_bytes:
            raise ReadRefused(P.FILE_TOO_LARGE, _too_large(max_bytes))
        return data
    raise ReadRefused(P.URL_NOT_ALLOWED, f"more than {MAX_REDIRECTS} redirects")


# ---- any row -----------------------------------------------------------------------------


def read_uri(uri: str, max_bytes: int, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """The bytes of a record's ``uri``: a resolved local path, an http(s) or fsspec URL."""
    scheme, sep, _ = uri.partition("://")
    if not sep:
        return read_local(uri, max_bytes)
    if scheme in ("http", "https"):
        return fetch_http(uri, max_bytes, timeout)
    from autovision.workspace.storage import read_bytes

    data = read_bytes(uri, max_bytes + 1)
    if len(data) > max_bytes:
        raise ReadRefused(P.FILE_TOO_LARGE, _too_large(max_bytes))
    return data
