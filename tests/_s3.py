"""A local S3 server for the tests: moto's server mode on 127.0.0.1 and a free port, one
bucket, dummy credentials and ``AUTOVISION_S3_ENDPOINT`` in the environment. No network."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no credential lookup on the network
}
# Variables that could point the tests at a real account.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def url(self, *parts: str) -> str:
        """``s3://BUCKET/part/part``."""
        return "/".join([f"s3://{self.bucket}", *(p.strip("/") for p in parts if p)])

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto, create a bucket, set the environment; undo all of it afterwards."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in (*ENV, *_CLEARED, "AUTOVISION_S3_ENDPOINT")}
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for k in _CLEARED:
            os.environ.pop(k, None)
        os.environ.update(ENV)
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        os.environ["AWS_CONFIG_FILE"] = os.devnull
        os.environ["AUTOVISION_S3_ENDPOINT"] = endpoint
        s3 = S3Server(endpoint=endpoint, bucket=f"av-{uuid.uuid4().hex[:12]}")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _forget_filesystems()


def _forget_filesystems() -> None:
    """s3fs caches one filesystem per set of options; a later server reuses the port maybe."""
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:
        pass
