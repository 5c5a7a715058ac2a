"""Trial workers placed on a Ray cluster (``train --ray ADDRESS``).

Ray only places and supervises: each worker is a Ray task running
:func:`~autovision.search.workers.run_worker`, as many as the cluster's CPUs (and GPUs) hold
at ``cpus_per_trial``/``gpus_per_trial`` each. The search stays in the run's Optuna study in
the workspace database, not in Ray Tune. A worker whose node goes away stops beating: its
trial is failed after the grace period and retried through the heartbeat; Ray starts the
task again where there is room, and it joins the search again (or ends at once when the
search is over).
"""

from __future__ import annotations

import uuid
from typing import Any

from autovision.errors import TrainingError
from autovision.search import study as studies
from autovision.search import workers as pool

TASK_RETRIES = 3
"""How often Ray starts a worker again after its node or process died."""


def _worker_task(kw: dict[str, Any]) -> dict[str, Any]:
    """What a Ray task runs: one trial worker; its report, or the error it ended with. The
    worker's name ends with its node's id, so the study shows where each trial ran."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    kw = {**kw, "worker": f"{kw['worker']}@{node[:12]}"}
    try:
        return pool.run_worker(**kw).to_dict()
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator
        return {"worker": kw.get("worker"), "error": f"{type(exc).__name__}: {exc}"}


def workers_held(resources: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many workers the cluster's resources hold (at least one)."""
    n = int(resources.get("CPU", 0.0) // cpus_per_trial) if cpus_per_trial > 0 else 0
    if gpus_per_trial > 0:
        by_gpu = int(resources.get("GPU", 0.0) // gpus_per_trial)
        n = by_gpu if cpus_per_trial <= 0 else min(n, by_gpu)
    return max(1, n)


def explore_on_ray(
    address: str,
    *,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    workers: int | None = None,
) -> Any:
    """The ``explore`` function of :class:`~autovision.search.search.Search` that runs the
    trial workers as Ray tasks on the cluster at ``address`` (``workers``: how many; default
    as many as its resources hold, no more than a ``--trials`` budget asks for)."""
    if cpus_per_trial < 0 or gpus_per_trial < 0 or (cpus_per_trial == 0 and gpus_per_trial == 0):
        raise TrainingError("--cpus-per-trial and --gpus-per-trial: give a positive amount")

    def explore(search: Any, study: Any) -> str:
        from autovision.cluster import ray_session

        with ray_session(address) as ray:
            n = workers or workers_held(ray.cluster_resources(), cpus_per_trial, gpus_per_trial)
            if search.budget.trials is not None:
                n = min(n, max(1, search.budget.trials))
            pool.publish(search, study, n)
            task = ray.remote(
                num_cpus=cpus_per_trial,
                num_gpus=gpus_per_trial,
                max_retries=TASK_RETRIES,
                retry_exceptions=False,
            )(_worker_task)
            ws, state = search.rt.ws, search.state
            threads = max(1, int(cpus_per_trial))
            refs = [
                task.remote(
                    {
                        "workspace_root": str(ws.root),
                        "db_url": ws.db_url,
                        "blob_url": ws.blobs.url,
                        "run_id": state.run_id,
                        "threads": threads,
                        "worker": f"ray:w{i}:{uuid.uuid4().hex[:4]}",
                    }
                )
                for i in range(n)
            ]
            search._emit("ray_workers", workers=n, address=address)
            pending = list(refs)
            reports: list[dict[str, Any]] = []

            def alive() -> bool:
                nonlocal pending
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                for ref in done:
                    try:
                        reports.append(ray.get(ref))
                    except ray.exceptions.RayError as exc:  # retries spent: node gone for good
                        reports.append({"error": f"Ray task failed: {exc}"})
                return bool(pending)

            stop = pool.coordinate(search, study, workers=n, spawn=False, alive=alive)
            search.reports = reports
            search._emit("ray_workers_end", reports=reports)
        errors = [r["error"] for r in reports if r.get("error")]
        if errors and len(errors) == len(reports) and studies.best_number(study) is None:
            raise TrainingError(f"every trial worker on Ray failed (first: {errors[0]})")
        return stop

    return explore
