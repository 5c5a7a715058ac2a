"""A throwaway Ray cluster on this machine: a head and one added node, one CPU each.

Use it in a module-scoped fixture (starting one costs seconds)::

    @pytest.fixture(scope="module")
    def cluster():
        with ray_cluster() as c:
            yield c
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

OBJECT_STORE_BYTES = 80 * 1024**2


@contextlib.contextmanager
def ray_cluster(cpus_per_node: int = 1) -> Iterator[Any]:
    """``ray.cluster_utils.Cluster`` with the driver connected; always shut down."""
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": cpus_per_node, "object_store_memory": OBJECT_STORE_BYTES}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
