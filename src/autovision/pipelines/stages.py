"""One small function per stage type, each calling the library function its CLI command
calls (no second implementation). ``inputs_*`` say what a stage reads (its cache key's
inputs, from earlier stages' outputs), ``run_*`` do the work and return the outputs
recorded in the workspace database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovision.errors import PipelineError
from autovision.pipelines import gates
from autovision.pipelines.schema import LoadedPipeline
from autovision.pipelines.sources import source_fingerprint


@dataclass
class Context:
    """What a stage sees: the workspace, the file, this run's outputs so far, a logger, and
    its own resume state (``state``, saved to its record with ``save_state``)."""

    ws: Any
    loaded: LoadedPipeline
    run_id: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: Callable[[str], None] = lambda _msg: None
    state: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] = field(default_factory=dict)  # state of an interrupted record
    save_state: Callable[[dict[str, Any]], None] = lambda _s: None

    @property
    def spec(self) -> Any:
        return self.loaded.spec

    def dataset_ref(self) -> dict[str, Any]:
        """The dataset version the stages after ``import`` read: the import's, else the
        latest version of the file's ``dataset``."""
        if "import" in self.outputs:
            o = self.outputs["import"]
            return {"dataset": o["ref"], "content_hash": o["content_hash"]}
        ds = self.ws.dataset(self.spec.dataset)
        return {"dataset": ds.ref, "content_hash": ds.content_hash}

    def model(self) -> dict[str, Any]:
        o = self.outputs["train"]
        return {"model": o["model"], "name": o["name"], "version": o["version"]}


# ---- import ------------------------------------------------------------------------------


def params_import(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    p = dict(p)
    p["source"] = ctx.loaded.resolve(p["source"])
    p["allow_roots"] = [ctx.loaded.resolve(r) for r in p.get("allow_roots") or []]
    return p


def inputs_import(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    fp = source_fingerprint(p["source"])
    roots = {r: source_fingerprint(r)["hash"] for r in p.get("allow_roots") or []}
    return {"source": fp["root"], "files": fp["files"], "content_hash": fp["hash"], "roots": roots}


def run_import(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.data.importer import import_dataset

    r = import_dataset(
        ctx.ws, ctx.spec.dataset, p["source"], **{k: v for k, v in p.items() if k != "source"}
    )
    d = r.to_dict()
    ds = r.version
    return {
        "dataset": ds.name,
        "version": ds.version,
        "ref": ds.ref,
        "content_hash": ds.content_hash,
        "images": d["images"],
        "labels": d["labels"],
        "splits": d["splits"],
        "problems": len(d["problems"]),
        "checks_summary": d.get("checks_summary"),
    }


# ---- check -------------------------------------------------------------------------------


def inputs_check(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return ctx.dataset_ref()


def run_check(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.checks.run import check_dataset
    from autovision.checks.store import load_checks
    from autovision.data.report import checks_summary, dataset_report

    ref = ctx.dataset_ref()["dataset"]
    model_based = {k: bool(p.get(k)) for k in ("label_issues", "outliers", "near_duplicates")}
    if any(model_based.values()):
        check_dataset(ctx.ws, ref, folds=p["folds"], budget=p.get("budget"), **model_based)
    ds = ctx.ws.dataset(ref)
    report = dataset_report(ds, checks=load_checks(ctx.ws, ds))
    counts = checks_summary(report)
    return {"dataset": ref, "counts": counts, "labels": report["labels"], "checked": model_based}


# ---- train -------------------------------------------------------------------------------


def inputs_train(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    out = ctx.dataset_ref()
    if p.get("exclude_issues") and "check" in ctx.outputs:
        out["checks"] = ctx.outputs["check"].get("counts")
    if p.get("base_model"):
        out["base_model"] = ctx.ws.model(p["base_model"])["model"]
    return out


def _resumable(ctx: Context, ref: str) -> str | None:
    """The search run an interrupted train stage of these inputs started, if unfinished."""
    from autovision.search.state import RunState, runs_dir

    run_id = ctx.resume.get("search_run_id")
    if not run_id:
        return None
    path = runs_dir(ctx.ws) / run_id / "state.json"
    try:
        state = RunState.load(path)
    except (OSError, ValueError, TypeError):
        return None
    if state.status == "finished" or f"{state.dataset}@{state.dataset_version}" != ref:
        return None
    return run_id


def run_train(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.search.run import train
    from autovision.search.state import find_resumable

    ref = ctx.dataset_ref()["dataset"]

    def progress(e: dict[str, Any]) -> None:
        if e["event"] == "search_start":
            ctx.state["search_run_id"] = e["run_id"]
            ctx.save_state(ctx.state)
        elif e["event"] == "trial_end":
            score = e.get("score")
            ctx.log(
                f"train: trial {e.get('trial')} {e.get('state')}"
                + (f" val {score:.4f}" if isinstance(score, float) else "")
            )

    resume_id = _resumable(ctx, ref)
    if resume_id is not None:
        name, _, version = ref.partition("@")
        if find_resumable(ctx.ws, name, int(version)).run_id != resume_id:
            resume_id = None
    if resume_id is not None:
        ctx.log(f"train: resuming search {resume_id} (killed before it finished)")
        r = train(ctx.ws, ref, resume=True, progress=progress, name=ctx.spec.model_name)
    else:
        r = train(
            ctx.ws,
            ref,
            budget=p.get("budget"),
            trials=p.get("trials"),
            task=p.get("task", "auto"),
            base_model=p.get("base_model"),
            seed=p.get("seed", 0),
            name=ctx.spec.model_name,
            exclude_issues=p.get("exclude_issues"),
            progress=progress,
        )
    return {
        "model": r.model,
        "name": r.name,
        "version": r.version,
        "ref": r.ref,
        "task": r.task,
        "dataset": f"{r.dataset}@{r.dataset_version}",
        "validation": r.validation,
        "trials": r.trials,
        "stop_reason": r.stop_reason,
        "search_run_id": r.run_id,
        "resumed": resume_id is not None,
        "seconds": round(r.seconds, 2),
    }


# ---- evaluate ----------------------------------------------------------------------------


def inputs_model(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return ctx.model()


def run_evaluate(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.evaluation.api import evaluate

    model = ctx.model()["model"]
    report = None
    if p.get("report"):
        report = Path(ctx.ws.model(model)["path"]) / "report.html"
    max_gap = (p.get("gate") or {}).get("max_slice_gap")  # the flags agree with the gate
    r = evaluate(
        ctx.ws,
        model,
        split=p.get("split", "test"),
        report=report,
        slice_by=p.get("slice_by"),
        max_slice_gap=max_gap,
        min_slice_support=p.get("min_slice_support"),
    )
    out = {
        "model": model,
        "split": r["split"],
        "images": r.get("images"),
        "accuracy": r.get("accuracy"),
        "macro_f1": r["macro"]["f1"],
        "recall": {lab: m.get("recall") for lab, m in r["per_label"].items()},
        "ece": (r.get("calibration") or {}).get("ece"),
        "metrics_path": r["metrics_path"],
        "files": [r["metrics_path"], *([r["report"]] if "report" in r else [])],
    }
    if "slices" in r:
        out["slices"] = r["slices"]
    return out


# ---- compare -----------------------------------------------------------------------------


def run_compare(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.versions import store
    from autovision.versions.compare import compare_on_split
    from autovision.versions.retrain import metric_name

    m = ctx.model()
    target = store.alias_target(ctx.ws, m["name"], p["alias"])
    candidate = f"{m['name']}@{m['version']}"
    base = {"candidate": candidate, "alias": p["alias"]}
    if target is None:
        note = f"{m['name']} has no alias {p['alias']!r} yet: nothing to compare with"
        return base | {"incumbent": None, "note": note}
    if target[0] == m["model"]:
        note = f"{m['name']}@{p['alias']} already is {candidate}"
        return base | {"incumbent": None, "note": note}
    incumbent = f"{m['name']}@{target[1]}"
    r = compare_on_split(ctx.ws, incumbent, candidate, split=p.get("split", "test"))
    metric = metric_name(ctx.outputs["train"].get("task", "single-label"))
    return base | {
        "incumbent": incumbent,
        "metric": metric,
        "incumbent_value": r["a"]["metrics"].get(metric),
        "candidate_value": r["b"]["metrics"].get(metric),
        "gain": r["difference"].get(metric),
        "dataset": r["dataset"],
        "split": r["split"],
    }


# ---- export ------------------------------------------------------------------------------


def run_export(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.models.export import export_model

    m = ctx.model()
    root = Path(ctx.loaded.resolve(p["output"])) if p.get("output") else ctx.ws.root / "exports"
    exports, files = {}, []
    for fmt in p["formats"]:
        out = root / f"{m['name']}-{m['version']}" / fmt
        r = export_model(ctx.ws, m["model"], out, format=fmt, evaluate=p.get("evaluate"))
        exports[fmt] = {k: v for k, v in r.to_dict().items() if k != "guard"}
        files += [str(Path(r.output) / f) for f in r.files]
        ctx.log(f"export: {fmt} -> {r.output}")
    return {"model": m["model"], "exports": exports, "files": files}


# ---- promote -----------------------------------------------------------------------------


def run_promote(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    from autovision.versions import store

    m = ctx.model()
    before = store.alias_target(ctx.ws, m["name"], p["alias"])
    out = {"model": m["model"], "alias": p["alias"], "version": m["version"]}
    if before is not None and before[0] == m["model"]:
        return out | {"previous": before[1], "moved": False}
    reason = p.get("reason") or f"pipeline {ctx.spec.name} (run {ctx.run_id})"
    store.set_alias(
        ctx.ws,
        m["name"],
        m["version"],
        p["alias"],
        kind="promote",
        reason=reason,
        details={"pipeline": ctx.spec.name, "run_id": ctx.run_id},
    )
    return out | {"previous": before[1] if before else None, "moved": True}


# ---- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class StageType:
    name: str
    inputs: Callable[[Context, dict[str, Any]], dict[str, Any]]
    run: Callable[[Context, dict[str, Any]], dict[str, Any]]
    gate: Callable[[dict[str, Any], dict[str, Any]], gates.GateResult] | None = None
    params: Callable[[Context, dict[str, Any]], dict[str, Any]] = lambda _c, p: p
    gate_keys: tuple[str, ...] = ("gate",)  # parameters judged, not worked with: not in the key


STAGE_TYPES: dict[str, StageType] = {
    "import": StageType("import", inputs_import, run_import, params=params_import),
    "check": StageType("check", inputs_check, run_check, gates.check_gate),
    "train": StageType("train", inputs_train, run_train),
    "evaluate": StageType("evaluate", inputs_model, run_evaluate, gates.evaluate_gate),
    "compare": StageType(
        "compare", inputs_model, run_compare, gates.compare_gate, gate_keys=("min_gain",)
    ),
    "export": StageType("export", inputs_model, run_export),
    "promote": StageType("promote", inputs_model, run_promote),
}


def stage_type(name: str) -> StageType:
    try:
        return STAGE_TYPES[name]
    except KeyError:
        raise PipelineError(f"unknown stage type {name!r}") from None
