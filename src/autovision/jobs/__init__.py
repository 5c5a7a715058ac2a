"""Background jobs (first kind: training) run by worker processes, not by the web server.

``start_training_job(ws, "flowers@2", user="ana", budget="10m")`` returns a job id at once;
``job_status`` and ``job_events(after_seq=...)`` follow it; ``cancel_job`` stops it;
``recover_jobs`` resumes the jobs whose worker was lost (a console restart, a crash). The
modules: ``store`` (the tables), ``process`` (spawn, check, stop a worker), ``summary``
(progress from events), ``api`` (these functions) and ``worker`` (the worker's main).
"""

from __future__ import annotations

from autovision.jobs.api import (
    cancel_job,
    check_train_options,
    job_events,
    job_status,
    list_jobs,
    recover_jobs,
    start_retrain_job,
    start_training_job,
)
from autovision.jobs.store import STATUSES

__all__ = [
    "STATUSES",
    "cancel_job",
    "check_train_options",
    "job_events",
    "job_status",
    "list_jobs",
    "recover_jobs",
    "start_retrain_job",
    "start_training_job",
]
