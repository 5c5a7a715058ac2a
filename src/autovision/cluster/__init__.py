"""Running on a Ray cluster: connecting to it, and what every Ray job of autovision shares.

Ray only places and supervises work here (batch prediction's actor pool, trial workers);
the state of record stays in the workspace database and its blob store.
"""

from autovision.cluster.connect import cluster_cpus, ray_session

__all__ = ["cluster_cpus", "ray_session"]
