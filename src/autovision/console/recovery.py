"""At the console's start: training jobs whose worker was lost (the console or the machine
restarted) are resumed with the search's own resume (:func:`autovision.jobs.recover_jobs`).

:func:`create_app` runs :func:`recover_at_start` from its lifespan; servers started without
a lifespan (``lifespan="off"``, as the tests do) call it themselves.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("autovision.console")


def recover_at_start(ws: Any) -> list[dict[str, Any]]:
    """Resume the interrupted jobs of ``ws``; the actions taken. A failure is logged, never
    raised: the console starts even when a job cannot be resumed (its page says why)."""
    from autovision.jobs import recover_jobs

    try:
        actions = recover_jobs(ws)
    except Exception:  # noqa: BLE001 - the console must come up; the log has the trace
        log.exception("recovering the interrupted training jobs failed")
        return []
    for action in actions:
        log.warning("job %s %s (%s)", action["id"], action["action"], action["why"])
    return actions
