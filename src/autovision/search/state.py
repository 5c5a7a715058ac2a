"""Run state for resume: one JSON file per run under ``ws.root / "runs" / RUN_ID``.

Written atomically (temporary file, then rename) after every epoch and trial, so a run
killed at any moment resumes with its budget accounting and cost measurements; the trials
themselves live in the Optuna study (workspace database) and the checkpoints beside this file.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autovision.errors import TrainingError

STATE_FILE = "state.json"


def runs_dir(ws: Any) -> Path:
    return Path(ws.root) / "runs"


def new_run_id() -> str:
    return f"run-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass
class RunState:
    """What a search needs to go on after a crash."""

    run_id: str
    dataset: str
    dataset_version: int
    task: str
    seed: int
    budget: dict[str, Any]
    base_model: str | None = None
    name: str | None = None  # the named model the result becomes a version of
    space: dict[str, Any] = field(default_factory=dict)
    # --exclude-issues: the issue names and what they left out when the run began (a resumed
    # run trains on the same images even if the checks were recomputed meanwhile)
    exclude_issues: list[str] | None = None
    excluded: dict[str, Any] | None = None
    cv: dict[str, Any] = field(default_factory=dict)  # --cv, --cv-folds (search.cv.CVSettings)
    status: str = "running"  # running | finished
    spent_s: float = 0.0
    trials_done: int = 0
    sessions: int = 1
    phase: str = "explore"
    stop_reason: str | None = None
    final_done: bool = False  # the final retraining ran (or was found not worth it)
    model: str | None = None
    costs: dict[str, Any] = field(default_factory=dict)
    explore: dict[str, Any] = field(default_factory=dict)  # fidelity of the exploration trials
    refit: dict[str, Any] = field(default_factory=dict)  # the finished refit (Search._refit)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    updated_at: str = ""

    @property
    def study_name(self) -> str:
        return f"autovision-{self.run_id}"

    def dir(self, ws: Any) -> Path:
        return runs_dir(ws) / self.run_id

    def save(self, ws: Any) -> None:
        folder = self.dir(ws)
        folder.mkdir(parents=True, exist_ok=True)
        self.updated_at = datetime.now(UTC).isoformat()
        tmp = folder / f".{STATE_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, folder / STATE_FILE)

    @classmethod
    def load(cls, path: Path) -> RunState:
        d = json.loads(Path(path).read_text())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def list_runs(ws: Any) -> list[RunState]:
    out = []
    root = runs_dir(ws)
    if not root.is_dir():
        return out
    for path in root.glob(f"*/{STATE_FILE}"):
        try:
            out.append(RunState.load(path))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda r: r.created_at)


def find_resumable(ws: Any, name: str, version: int | None = None) -> RunState:
    """The latest unfinished run of dataset ``name`` (of ``version`` when given)."""
    runs = [
        r
        for r in list_runs(ws)
        if r.dataset == name
        and r.status != "finished"
        and (version is None or r.dataset_version == version)
    ]
    if not runs:
        which = f"{name}@{version}" if version is not None else name
        raise TrainingError(f"no unfinished training run of {which} to resume")
    return runs[-1]
