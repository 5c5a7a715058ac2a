"""Reading what rows name: regular files only, size caps, and no fetch from private addresses
(the address checked before connecting and on every redirect). Loopback only, no real network."""

from __future__ import annotations

import http.server
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovision.data import fetch
from autovision.data.fetch import ReadRefused, blocked_address, fetch_http, read_local
from autovision.data.importer import import_dataset


def png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("100.64.0.1", "public"),  # CGNAT: not private to Python, not global either
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", ""),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_blocked_addresses(address: str, blocked: str | None) -> None:
    why = blocked_address(address)
    if blocked is None:
        assert why is None
    else:
        assert why is not None and blocked in why


# ---- local files -------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_fifo_and_devices_are_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ReadRefused) as info:
        read_local(str(tmp_path / "pipe"), 1000)
    assert info.value.reason == "not_a_regular_file" and "FIFO" in info.value.message
    with pytest.raises(ReadRefused) as info:
        read_local("/dev/zero", 1000)
    assert info.value.reason == "not_a_regular_file" and "device" in info.value.message


def test_size_cap_before_reading_and_links(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    assert read_local(str(tmp_path / "a.bin"), 100) == b"x" * 100
    with pytest.raises(ReadRefused) as info:
        read_local(str(tmp_path / "a.bin"), 99)
    assert info.value.reason == "file_too_large"
    os.symlink(tmp_path / "a.bin", tmp_path / "link")
    with pytest.raises(ReadRefused) as info:  # resolved paths are opened with O_NOFOLLOW
        read_local(str(tmp_path / "link"), 100)
    assert info.value.reason == "path_not_allowed"


@pytest.mark.timeout(30)
def test_import_with_fifo_and_dev_zero_rows(workspace, tmp_path: Path) -> None:
    d = tmp_path / "src"
    d.mkdir()
    (d / "good.png").write_bytes(png(1))
    os.mkfifo(d / "fifo.png")
    (d / "d.csv").write_text("good.png,cat\nfifo.png,cat\n/dev/zero,cat\nfile:///dev/zero,cat\n")
    result = import_dataset(workspace, "x", d / "d.csv")
    assert [(p["line"], p["reason"]) for p in result.problems] == [
        (2, "not_a_regular_file"),
        (3, "path_not_allowed"),
        (4, "path_not_allowed"),
    ]
    result = import_dataset(workspace, "x", d / "d.csv", allow_roots=["/dev"])
    assert [(p["line"], p["reason"]) for p in result.problems] == [
        (2, "not_a_regular_file"),
        (3, "not_a_regular_file"),
        (4, "not_a_regular_file"),
    ]
    assert result.to_dict()["images"] == 1


def test_max_file_mb(workspace, tmp_path: Path) -> None:
    d = tmp_path / "src"
    (d / "a").mkdir(parents=True)
    (d / "a" / "small.png").write_bytes(png(1))
    (d / "a" / "big.png").write_bytes(png(2) + b"\0" * 3000)
    result = import_dataset(workspace, "x", d, max_file_mb=0.002)
    assert [(Path(p["source"]).name, p["reason"]) for p in result.problems] == [
        ("big.png", "file_too_large")
    ]
    assert "--max-file-mb" in result.problems[0]["message"]


# ---- http --------------------------------------------------------------------------------


class _Server:
    """A tiny loopback HTTP server: ``routes`` maps a path to (status, headers, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[tuple[str, str]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.seen.append((self.path, self.headers.get("Host", "")))
                status, headers, body = server.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers and "X-No-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def fake_dns(monkeypatch, server: _Server) -> dict[str, str]:
    """Names to addresses; the "public" 8.8.8.8 is wired to the loopback server."""
    names = {"public.test": "8.8.8.8", "internal.test": "127.0.0.1", "meta.test": "169.254.169.254"}
    calls: list[str] = []
    real_connect = socket.create_connection

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return [names[host]]

    def connect(address, *args, **kwargs):
        host, _ = address
        assert host != "127.0.0.1", "connected to a refused address"
        if host == "8.8.8.8":
            return real_connect(("127.0.0.1", server.port), *args, **kwargs)
        raise AssertionError(f"unexpected connection to {address}")

    monkeypatch.setattr(fetch, "resolve_host", resolve)
    monkeypatch.setattr(fetch.socket, "create_connection", connect)
    names["_calls"] = calls  # type: ignore[assignment]
    return names


def test_loopback_rows_are_refused_with_and_without_allow_urls(
    workspace, tmp_path: Path, server: _Server
) -> None:
    server.routes["/a.png"] = (200, {}, png(3))
    d = tmp_path / "src"
    d.mkdir()
    (d / "good.png").write_bytes(png(1))
    rows = [
        f"http://127.0.0.1:{server.port}/a.png",
        f"http://localhost:{server.port}/a.png",
        f"http://[::ffff:127.0.0.1]:{server.port}/a.png",
        f"http://0.0.0.0:{server.port}/a.png",
    ]
    (d / "d.csv").write_text("good.png,cat\n" + "".join(f"{r},cat\n" for r in rows))
    without = import_dataset(workspace, "x", d / "d.csv")
    assert [p["reason"] for p in without.problems] == ["url_not_allowed"] * 4
    assert "--allow-urls" in without.problems[0]["message"]
    with_flag = import_dataset(workspace, "x", d / "d.csv", allow_urls=True)
    assert [p["reason"] for p in with_flag.problems] == ["url_not_allowed"] * 4
    assert "loopback" in with_flag.problems[0]["message"]
    assert with_flag.to_dict()["images"] == 1
    assert server.seen == []  # never connected


def test_public_fetch_keeps_the_host_name(server: _Server, fake_dns) -> None:
    server.routes["/a.png"] = (200, {}, png(3))
    url = f"http://public.test:{server.port}/a.png"
    assert fetch_http(url, 10_000, timeout=5) == png(3)
    assert server.seen == [("/a.png", f"public.test:{server.port}")]
    assert fake_dns["_calls"] == ["public.test"]  # one lookup; the connection used its answer


def test_redirects_are_checked_at_every_hop(server: _Server, fake_dns) -> None:
    port = server.port
    server.routes["/start"] = (302, {"Location": "/next"}, b"")
    server.routes["/next"] = (302, {"Location": f"http://internal.test:{port}/secret"}, b"")
    server.routes["/secret"] = (200, {}, b"the admin page")
    server.routes["/meta"] = (307, {"Location": "http://meta.test/latest/meta-data/"}, b"")
    with pytest.raises(ReadRefused) as info:
        fetch_http(f"http://public.test:{port}/start", 10_000, timeout=5)
    assert info.value.reason == "url_not_allowed" and "loopback" in info.value.message
    assert [p for p, _ in server.seen] == ["/start", "/next"]
    with pytest.raises(ReadRefused, match="metadata"):
        fetch_http(f"http://public.test:{port}/meta", 10_000, timeout=5)
    server.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(ReadRefused, match="redirects"):
        fetch_http(f"http://public.test:{port}/loop", 10_000, timeout=5)
    assert sum(p == "/loop" for p, _ in server.seen) == fetch.MAX_REDIRECTS + 1


def test_http_size_cap_while_streaming(server: _Server, fake_dns) -> None:
    port = server.port
    server.routes["/declared"] = (200, {}, b"x" * 5000)
    server.routes["/undeclared"] = (200, {"X-No-Length": "1", "Connection": "close"}, b"x" * 5000)
    for path in ("/declared", "/undeclared"):
        with pytest.raises(ReadRefused) as info:
            fetch_http(f"http://public.test:{port}{path}", 1000, timeout=5)
        assert info.value.reason == "file_too_large"
    with pytest.raises(FileNotFoundError):
        fetch_http(f"http://public.test:{port}/nothing", 1000, timeout=5)


def _connect_to_loopback(monkeypatch, port: int) -> None:
    """Any host resolves to a public address, and every connection goes to 127.0.0.1:port."""
    real_connect = socket.create_connection
    monkeypatch.setattr(fetch, "resolve_host", lambda host, port: ["8.8.8.8"])
    monkeypatch.setattr(
        fetch.socket,
        "create_connection",
        lambda addr, *a, **k: real_connect(("127.0.0.1", port), *a, **k),
    )


@pytest.mark.timeout(20)
def test_http_timeout(monkeypatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    port = listener.getsockname()[1]
    _connect_to_loopback(monkeypatch, port)
    try:
        with pytest.raises(ReadRefused, match="no answer within"):
            fetch_http(f"http://slow.test:{port}/a.png", 1000, timeout=0.5)
    finally:
        listener.close()


@pytest.mark.timeout(20)
def test_http_slow_drip_meets_the_deadline(monkeypatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    _connect_to_loopback(monkeypatch, port)
    try:
        with pytest.raises(ReadRefused, match="longer than the timeout"):
            fetch_http(f"http://slow.test:{port}/a.png", 10_000, timeout=1.0)
    finally:
        stop.set()
        listener.close()
        thread.join(5)
