"""A real server on loopback (uvicorn in a thread): tritonclient with its default binary
data, a streamed body over the limit, and TLS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from autovision.security import create_key

from .conftest import LABELS, MODEL


@contextmanager
def running(app, **config) -> Iterator[int]:
    """Serve ``app`` on a free loopback port in a thread; yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cfg = {"log_level": "warning", "access_log": False, "lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, **cfg))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def live(served_ws) -> Iterator[int]:
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(served_ws, [MODEL], settings=ServerSettings(key_cache_ttl_s=0))
    with running(app) as port:
        yield port


def test_tritonclient_binary_infer(live, served_ws, image_bytes):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from autovision.data.decode import load_rgb
    from autovision.models.package import ModelPackage

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{live}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL)
        meta = client.get_model_metadata(MODEL)
        assert [i["name"] for i in meta["inputs"]] == ["image", "pixels"]

        raw = [image_bytes(0, 40, fmt="JPEG"), image_bytes(1, 64), image_bytes(2, 24)]
        inp = httpclient.InferInput("image", [len(raw)], "BYTES")
        inp.set_data_from_numpy(np.array(raw, dtype=object))  # binary by default
        result = client.infer(MODEL, [inp])
        probs = result.as_numpy("probabilities")
        labels = [v.decode() for v in result.as_numpy("label")]
        expected = ModelPackage.load(served_ws.model_path(MODEL)).predict_proba(
            [load_rgb(b) for b in raw]
        )
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        assert labels == [LABELS[i] for i in expected.argmax(1)]
        # errors come back as exceptions, and the server keeps answering
        bad = httpclient.InferInput("image", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"\x89PNG\r\n\x1a\nnope"], dtype=object))
        with pytest.raises(InferenceServerException) as err:
            client.infer(MODEL, [bad])
        assert err.value.status() == "415"
        assert "unsupported_format" in str(err.value)
        assert "Traceback" not in str(err.value)

        # keys created while the server runs apply at once, headers as tritonclient sends them
        _, key = create_key(served_ws, "predict")
        with pytest.raises(InferenceServerException) as err:
            client.infer(MODEL, [inp])
        assert err.value.status() == "401"
        result = client.infer(MODEL, [inp], headers={"Authorization": f"Bearer {key}"})
        assert result.as_numpy("probabilities").shape == (len(raw), len(LABELS))
        assert client.is_server_live()  # health stays open
    finally:
        client.close()


def test_streamed_body_over_the_limit(served_ws):
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(served_ws, [MODEL], settings=ServerSettings(max_body_bytes=50_000))

    def chunks():
        for _ in range(200):
            yield b"x" * 10_000

    with running(app) as port, httpx.Client(timeout=20) as http:
        url = f"http://127.0.0.1:{port}"
        try:
            r = http.post(
                f"{url}/v1/models/{MODEL}:predict",
                content=chunks(),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "payload_too_large"
        except httpx.HTTPError:
            pass  # the server may close the connection while the client still writes
        assert http.get(f"{url}/v2/health/ready").status_code == 200


def test_admin_port(served_ws):
    """--admin-port: /admin/* on its own port (same state), 404 on the main port."""
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    settings = ServerSettings(admin_port=0, key_cache_ttl_s=0)  # 0: a free port
    app = create_app(served_ws, [MODEL], settings=settings)
    _, admin_key = create_key(served_ws, "admin")
    h = {"Authorization": f"Bearer {admin_key}"}
    with running(app) as port, httpx.Client(timeout=10) as http:
        main, admin = (
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{app.state.admin_app.state.port}",
        )
        assert app.state.admin_app.state.port != port
        r = http.get(f"{main}/admin/models", headers=h)
        assert r.status_code == 404, r.text
        assert (
            http.post(f"{main}/admin/keys", json={"role": "predict"}, headers=h).status_code == 404
        )
        r = http.get(f"{admin}/admin/models", headers=h)
        assert r.status_code == 200 and [m["id"] for m in r.json()["models"]] == [MODEL]
        r = http.post(f"{admin}/admin/keys", json={"role": "predict"}, headers=h)
        assert r.status_code == 201, r.text
        new_key = r.json()["key"]  # the shared state: the main port takes it at once
        r = http.get(f"{main}/v1/models/{MODEL}", headers={"X-API-Key": new_key})
        assert r.status_code == 200
        assert http.get(f"{admin}/v2/health/ready").status_code == 404  # admin routes only
        assert http.get(f"{admin}/admin/models").status_code == 401
        r = http.get(f"{admin}/admin/models", headers={**h, "Host": "evil.example"})
        assert r.status_code == 421
        assert http.get(f"{main}/v2/health/ready").status_code == 200
    with pytest.raises(httpx.ConnectError):  # stopped with the main server
        httpx.get(f"{admin}/admin/models", headers=h, timeout=2)


def _tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (ca, cert, key) PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("autovision test CA"))
        .issuer_name(name("autovision test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_tls(served_ws, tmp_path: Path):
    """HTTPS verified against a CA made here; plain HTTP on the TLS port fails cleanly and
    the server keeps answering HTTPS."""
    import ssl

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings, uvicorn_kwargs

    ca, cert, key = _tls_files(tmp_path)
    settings = ServerSettings(ssl_certfile=str(cert), ssl_keyfile=str(key))
    kwargs = uvicorn_kwargs(settings)
    tls = {k: kwargs[k] for k in ("ssl_certfile", "ssl_keyfile")}
    verify = ssl.create_default_context(cafile=str(ca))
    with running(create_app(served_ws, [MODEL], settings=settings), **tls) as port:
        url = f"https://127.0.0.1:{port}"
        with httpx.Client(verify=verify, timeout=10) as https:
            r = https.get(f"{url}/v2/health/ready")
            assert r.status_code == 200 and r.json()["ready"] is True
            assert r.http_version == "HTTP/1.1"
        with pytest.raises(httpx.HTTPError):  # a stranger's CA is not trusted
            httpx.get(f"{url}/healthz", verify=ssl.create_default_context(), timeout=5)
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        except httpx.HTTPError:
            plain = None  # the connection is closed: the clean failure
        assert plain is None or plain.status_code != 200
        with httpx.Client(verify=verify, timeout=10) as https:  # still serving
            assert https.get(f"{url}/healthz").status_code == 200
