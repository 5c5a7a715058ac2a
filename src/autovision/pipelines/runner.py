"""``run_pipeline``: the stages of a pipeline file in dependency order, each skipped when its
cache key matches a finished earlier run of it, gates judged on the outputs, one run of a
pipeline at a time.

The cache key is the sha256 of the stage type, its resolved parameters (less the gate's,
which are judged on the outputs instead), its inputs' content hashes and identities (the
dataset version and its content hash, the model id...) and the autovision version. A run
killed mid-way leaves its records ``running``; the next run (it holds the pipeline's lock, so
that process is gone) marks them ``interrupted``, reuses every stage that finished, and an
interrupted train stage continues its search through ``train(resume=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovision.errors import AutovisionError, PipelineError
from autovision.pipelines import store
from autovision.pipelines.schema import LoadedPipeline, load_pipeline
from autovision.pipelines.stages import Context, stage_type
from autovision.workspace.db import utcnow

Log = Callable[[str], None]


class PipelineBusy(PipelineError):
    """Another run of the same pipeline holds its lock."""


def autovision_version() -> str:
    from autovision import __version__

    return __version__


def cache_key(stage: str, params: dict[str, Any], inputs: dict[str, Any], version: str) -> str:
    blob = json.dumps(
        {"stage": stage, "params": params, "inputs": inputs, "autovision": version},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@contextlib.contextmanager
def pipeline_lock(ws: Any, name: str) -> Iterator[None]:
    """An exclusive lock file per pipeline, released by the OS when the process dies."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    folder = Path(ws.root) / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise PipelineBusy(
                f"pipeline {name!r} is already running (process {holder}); one run at a time"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class StageReport:
    stage: str
    status: str
    message: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    seconds: float | None = None
    cache_key: str = ""
    reused_from: str | None = None  # the run whose outputs were reused

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status,
            "message": self.message,
            "outputs": self.outputs,
            "gate": self.gate,
            "seconds": self.seconds,
            "cache_key": self.cache_key,
            "reused_from": self.reused_from,
        }


@dataclass
class RunReport:
    run_id: str | None
    pipeline: str
    status: str  # done, failed, gate_failed, dry_run
    message: str
    stages: list[StageReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.status in (store.DONE, "dry_run") else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "message": self.message,
            "exit_code": self.exit_code,
            "stages": [s.to_dict() for s in self.stages],
        }


def _files_present(outputs: dict[str, Any]) -> bool:
    return all(os.path.exists(f) for f in outputs.get("files") or [] if "://" not in str(f))


def _split_params(st: Any, params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in st.gate_keys}


def _store_card(ws: Any, model_id: str | None, info: dict[str, Any], say: Log) -> None:
    """The pipeline's ``card:`` block becomes the intended-use section of the model the
    train stage made or reused (its card in the package is rewritten when it changed)."""
    from autovision.cards import set_card_info
    from autovision.cards.build import check_card_info

    if not model_id:
        return
    try:
        mv = ws.model(model_id)
        if (mv.get("card") or None) == check_card_info(info, "card"):
            return
        set_card_info(ws, model_id, info)
    except AutovisionError as exc:  # the model is made; its card text can be set later
        say(f"train: the card block was not stored: {exc}")
        return
    ref = f"{mv['name']}@{mv['version']}" if "name" in mv and "version" in mv else model_id
    say(f"train: the card block is now in the model card of {ref}")


def _run_of(ws: Any, record_id: int | None) -> str | None:
    if record_id is None:
        return None
    from autovision.workspace.db import PipelineStageRow

    with ws.Session() as s:
        row = s.get(PipelineStageRow, record_id)
        return row.run_id if row is not None else None


def run_pipeline(
    ws: Any,
    pipeline: str | os.PathLike[str] | LoadedPipeline,
    *,
    force: Iterable[str] = (),
    dry_run: bool = False,
    log: Log | None = None,
    trigger: str = "cli",
) -> RunReport:
    """Run (or, ``dry_run``, plan) the pipeline file; ``force``: stages to rerun even when
    unchanged. The report's ``exit_code`` is non-zero when a stage failed or a gate stopped
    it."""
    loaded = pipeline if isinstance(pipeline, LoadedPipeline) else load_pipeline(pipeline)
    spec = loaded.spec
    present = spec.stages.present()
    forced = set(force)
    unknown = sorted(forced - set(present))
    if unknown:
        raise PipelineError(
            f"--force {', '.join(unknown)}: not a stage of {loaded.path.name} "
            f"(its stages: {', '.join(present)})"
        )
    say = log or (lambda _m: None)
    if dry_run:
        return _plan(ws, loaded, present, forced, say)
    with pipeline_lock(ws, spec.name):
        stale = store.mark_interrupted(ws, spec.name)
        for run_id in stale:
            say(f"run {run_id} was stopped before the end: resuming where it stopped")
        run_id = store.create_run(
            ws,
            spec.name,
            file=str(loaded.path),
            spec=spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
            card=spec.card.model_dump(mode="json") if spec.card else None,
            trigger=trigger,
            version=autovision_version(),
        )
        try:
            return _execute(ws, loaded, run_id, present, forced, say)
        except BaseException as exc:  # Ctrl-C, or a bug: the record says where it stopped
            status = store.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else store.FAILED
            store.finish_run(ws, run_id, status, f"{type(exc).__name__}: {exc}")
            raise


def _execute(
    ws: Any, loaded: LoadedPipeline, run_id: str, present: list[str], forced: set[str], say: Log
) -> RunReport:
    spec = loaded.spec
    version = autovision_version()
    ctx = Context(ws=ws, loaded=loaded, run_id=run_id, log=say)
    report = RunReport(run_id, spec.name, store.DONE, "")
    stopped: str | None = None
    for position, name in enumerate(present):
        st = stage_type(name)
        if stopped is not None:
            msg = f"skipped: {stopped}"
            store.add_stage(
                ws, run_id, spec.name, name, position, status=store.SKIPPED, message=msg
            )
            report.stages.append(StageReport(name, store.SKIPPED, msg))
            say(f"{name}: {msg}")
            continue
        raw = spec.stages.get(name).model_dump(mode="json")
        t0 = time.monotonic()
        record_id: int | None = None
        try:
            params = st.params(ctx, raw)
            inputs = st.inputs(ctx, params)
            key = cache_key(name, _split_params(st, params), inputs, version)
            earlier = None if name in forced else store.last_work(ws, spec.name, name, key)
            if earlier is not None and not _files_present(earlier["outputs"]):
                say(f"{name}: files of the earlier run are gone: running it again")
                earlier = None
            if earlier is not None:
                origin = earlier["reused_from"] or earlier["id"]
                outputs, status = earlier["outputs"], store.REUSED
                msg = f"unchanged since run {_run_of(ws, origin)}: outputs reused"
                record_id = store.add_stage(
                    ws,
                    run_id,
                    spec.name,
                    name,
                    position,
                    status=status,
                    cache_key=key,
                    params=params,
                    inputs=inputs,
                    outputs=outputs,
                    reused_from=origin,
                    message=msg,
                    started_at=utcnow(),
                    finished_at=utcnow(),
                    seconds=0.0,
                )
            else:
                cut = store.last_interrupted(ws, spec.name, name, key)
                ctx.resume = dict(cut["state"]) if cut else {}
                ctx.state = {}
                why = "forced" if name in forced else ("resuming" if cut else "running")
                say(f"{name}: {why}")
                record_id = store.add_stage(
                    ws,
                    run_id,
                    spec.name,
                    name,
                    position,
                    status=store.RUNNING,
                    cache_key=key,
                    params=params,
                    inputs=inputs,
                    started_at=utcnow(),
                )
                rid = record_id
                ctx.save_state = lambda s, rid=rid: store.update_stage(ws, rid, state=dict(s))
                outputs = st.run(ctx, params)
                status = store.DONE
                msg = "done"
        except AutovisionError as exc:
            msg = f"failed: {exc}"
            values = dict(
                status=store.FAILED,
                message=msg,
                finished_at=utcnow(),
                seconds=round(time.monotonic() - t0, 3),
            )
            if record_id is None:
                store.add_stage(ws, run_id, spec.name, name, position, **values)
            else:
                store.update_stage(ws, record_id, **values)
            report.stages.append(StageReport(name, store.FAILED, msg))
            say(f"{name}: {msg}")
            stopped = f"{name} failed"
            report.status, report.message = store.FAILED, f"stage {name} failed: {exc}"
            continue
        except BaseException:
            if record_id is not None:
                store.update_stage(ws, record_id, status=store.INTERRUPTED, finished_at=utcnow())
            raise
        ctx.outputs[name] = outputs
        if name == "train" and spec.card is not None:
            _store_card(ws, outputs.get("model"), spec.card.model_dump(exclude_none=True), say)
        gate = st.gate(params, outputs) if st.gate else None
        gate_dict = gate.to_dict() if gate and gate.conditions else None
        if gate_dict:
            msg = f"{msg}; {gate.message()}"
        final = status if gate is None or gate.passed else store.GATE_FAILED
        seconds = round(time.monotonic() - t0, 3)
        update: dict[str, Any] = dict(status=final, message=msg, gate=gate_dict)
        if status != store.REUSED:
            update |= dict(outputs=outputs, finished_at=utcnow(), seconds=seconds)
        store.update_stage(ws, record_id, **update)
        report.stages.append(
            StageReport(
                name,
                final,
                msg,
                outputs,
                gate_dict,
                seconds,
                key,
                _run_of(ws, earlier["reused_from"] or earlier["id"])
                if status == store.REUSED and earlier
                else None,
            )
        )
        say(f"{name}: {msg}")
        if final == store.GATE_FAILED:
            stopped = f"the {name} gate failed"
            report.status = store.GATE_FAILED
            report.message = f"stopped at {name}: {gate.message()}"
    if report.status == store.DONE:
        reused = sum(s.status == store.REUSED for s in report.stages)
        if reused == len(report.stages):
            report.message = f"nothing changed: all {reused} stages reused"
        else:
            report.message = f"done: {len(report.stages) - reused} ran, {reused} reused"
    store.finish_run(ws, run_id, report.status, report.message)
    say(report.message)
    return report


def _plan(
    ws: Any, loaded: LoadedPipeline, present: list[str], forced: set[str], say: Log
) -> RunReport:
    """What a run would do now, writing nothing."""
    spec = loaded.spec
    version = autovision_version()
    ctx = Context(ws=ws, loaded=loaded, run_id="dry-run", log=say)
    report = RunReport(None, spec.name, "dry_run", "")
    changed: str | None = None
    for name in present:
        st = stage_type(name)
        raw = spec.stages.get(name).model_dump(mode="json")
        if changed is not None:
            msg = f"would run ({changed} runs first: its outputs will be new)"
            report.stages.append(StageReport(name, "would_run", msg))
            say(f"{name}: {msg}")
            continue
        try:
            params = st.params(ctx, raw)
            key = cache_key(name, _split_params(st, params), st.inputs(ctx, params), version)
        except AutovisionError as exc:
            msg = f"would fail: {exc}"
            report.stages.append(StageReport(name, "would_fail", msg))
            say(f"{name}: {msg}")
            changed = name
            continue
        earlier = None if name in forced else store.last_work(ws, spec.name, name, key)
        if earlier is not None and _files_present(earlier["outputs"]):
            ctx.outputs[name] = earlier["outputs"]
            msg = "would reuse the outputs of an earlier run (unchanged)"
            gate = st.gate(params, earlier["outputs"]) if st.gate else None
            if gate is not None and gate.conditions:
                msg = f"{msg}; {gate.message()}"
            report.stages.append(
                StageReport(name, "would_reuse", msg, earlier["outputs"], cache_key=key)
            )
        else:
            msg = "would run (forced)" if name in forced else "would run (new or changed)"
            report.stages.append(StageReport(name, "would_run", msg, cache_key=key))
            changed = name
        say(f"{name}: {msg}")
    runs = sum(s.status != "would_reuse" for s in report.stages)
    report.message = f"dry run: {runs} of {len(report.stages)} stages would run"
    return report
