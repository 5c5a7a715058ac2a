"""``ray_session(address)``: join a Ray cluster for the length of one job.

A process that is already connected (a test holding a ``ray.cluster_utils.Cluster``, a
notebook) keeps its connection; otherwise the job connects and disconnects at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from autovision.errors import ClusterError


def _runtime_env() -> dict[str, Any]:
    """Workers see the AUTOVISION_* and AWS_* settings of the driver (DB and blob URLs, the
    S3 endpoint, the encryption key), so a node needs autovision installed and nothing else."""
    keep = ("AUTOVISION_", "AWS_")
    env = {k: v for k, v in os.environ.items() if k.startswith(keep)}
    return {"env_vars": env} if env else {}


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """Connect to the cluster at ``address`` (``ray://`` client URLs, ``HOST:PORT`` of a
    head started with ``ray start --head``, or ``auto``); yields the ``ray`` module."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(
            address=address,
            logging_level="WARNING",
            log_to_driver=False,
            runtime_env=_runtime_env() or None,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ClusterError(f"{address}: cannot join the Ray cluster: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> float:
    """The CPUs the cluster has now (alive nodes only)."""
    return float(ray.cluster_resources().get("CPU", 0.0))
