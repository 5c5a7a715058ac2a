"""A pipeline source in S3 (a local moto server): each poll sees objects another machine
added since the last one (no stale listing cache)."""

from __future__ import annotations

import pytest

from autovision.pipelines.sources import SourceLister
from tests._s3 import s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def test_a_poll_sees_new_objects(s3) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="drop/cat/1.png", Body=b"one")
    lister = SourceLister()
    first = lister.listing(s3.url("drop"))
    assert len(first) == 1
    client.put_object(Bucket=s3.bucket, Key="drop/dog/2.png", Body=b"two")  # elsewhere
    second = lister.listing(s3.url("drop"))
    assert len(second) == 2 and set(first) < set(second)
