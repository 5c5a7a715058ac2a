"""``autovision train``: a budgeted search from a dataset version to a model package."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err_console,
    fail,
    handle_errors,
    open_workspace,
    print_json,
)

STATE_COLOUR = {
    "COMPLETE": "green",
    "REFIT": "green",
    "PRUNED": "yellow",
    "SKIPPED": "dim",
    "FAIL": "red",
}


class Task(StrEnum):
    auto = "auto"
    single_label = "single-label"
    multi_label = "multi-label"


class Choice(StrEnum):
    auto = "auto"
    off = "off"


class CVChoice(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def _config_text(cfg: dict[str, Any] | None) -> str:
    if not cfg:
        return "?"
    return f"{cfg.get('backbone')}/{cfg.get('mode')}@{cfg.get('image_size')}"


def _score(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _trial_score(e: dict[str, Any]) -> str:
    """``val 0.9500`` or, cross-validated, ``cv 0.9412 +- 0.0210 (5x3, val 1.0000)``."""
    r = e.get("ranking")
    if not r or "mean" not in r:
        return f"val {_score(e.get('score'))}"
    folds = f"{r['folds']}x{r['repeats']}"
    return f"cv {r['mean']:.4f} +- {r['sd']:.4f} ({folds}, val {_score(r.get('validation'))})"


class ProgressView:
    """Renders the search's progress events: one line per finished trial, and a status line
    (trial, strategy, epoch, best validation score so far, time left)."""

    def __init__(self, out: Console) -> None:
        from autovision.search.budget import format_seconds

        self.out = out
        self.fmt = format_seconds
        self.live = Live(Text(""), console=out, refresh_per_second=4, transient=True)
        self.trial: dict[str, Any] = {}

    def __enter__(self) -> ProgressView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def _left(self, e: dict[str, Any]) -> str:
        left = e.get("time_left")
        return f"{self.fmt(left)} left" if left is not None else f"{self.fmt(e['elapsed'])} spent"

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e["event"]
        if kind == "search_start":
            b = e.get("budget", {})
            what = " / ".join(
                p
                for p in (
                    self.fmt(b["seconds"]) if b.get("seconds") else "",
                    f"{b['trials']} trials" if b.get("trials") else "",
                )
                if p
            )
            again = (
                f", resumed with {e.get('trials_before', 0)} trials done"
                if e.get("resumed")
                else ""
            )
            self.out.print(f"[bold]Search[/] {e['run_id']} (budget {what}{again})", highlight=False)
        elif kind == "trial_start":
            self.trial = e
            self._status(e, "starting")
        elif kind == "epoch":
            self._status(e, f"epoch {e['epoch']}/{e['epochs']} val {_score(e.get('score'))}")
        elif kind == "trial_end":
            state = e.get("state")
            cfg = e.get("config") or self.trial.get("config")
            colour = STATE_COLOUR
            line = (
                f"trial {e['trial']:>3} [{colour.get(state, 'white')}]{state:<8}[/] "
                f"{_config_text(cfg):<36} {_trial_score(e)}  "
                f"best {_score(e.get('best'))}  {self._left(e)}"
                + (f"  [dim]{e['worker']}[/]" if e.get("worker") else "")
            )
            if state == "SKIPPED":
                what = f" {_config_text(cfg)}" if cfg else ""
                line = f"trial {e['trial']:>3} [dim]skipped{what} ({e.get('why', '')})[/]"
            self.out.print(line, highlight=False)
        elif kind == "refit_skipped":
            self.out.print(
                f"[dim]no refit of trial {e['trial']} on training + validation images "
                f"({e.get('why', '')}): the trial's own weights are packaged[/]",
                highlight=False,
            )
        elif kind == "ray_workers":
            self.out.print(
                f"[dim]{e['workers']} trial workers on the Ray cluster at {e['address']}[/]",
                highlight=False,
            )
        elif kind == "workers_start":
            self.out.print(
                f"[dim]{e['workers']} trial workers, {e['threads']} thread(s) each[/]",
                highlight=False,
            )
        elif kind == "export":
            self.live.update(Text(f"writing the model package... {self._left(e)}"))

    def _status(self, e: dict[str, Any], what: str) -> None:
        t = self.trial
        phase = f" ({t['phase']})" if t.get("phase") in ("final", "refit") else ""
        self.live.update(
            Text(
                f"trial {t.get('trial')}{phase} {_config_text(t.get('config'))} "
                f"on {t.get('n_train')} images: {what} | best {_score(e.get('best'))} | "
                f"{self._left(e)}"
            )
        )


def _print_result(r: dict[str, Any]) -> None:
    from autovision.search.budget import format_seconds

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("model", f"[bold]{r['name']}@{r['version']}[/] ({r['model']})")
    table.add_row("dataset", f"{r['dataset']}@{r['dataset_version']} ({r['task']})")
    for k, v in r["validation"].items():
        table.add_row(f"validation {k}", f"{v:.4f}" if isinstance(v, float) else str(v))
    best = r["best"]
    table.add_row("best", f"{_config_text(best)}, trial {best.get('trial')}")
    skip = ("backbone", "mode", "image_size", "trial", "refit")
    details = {k: v for k, v in best.items() if k not in skip}
    table.add_row("", ", ".join(f"{k}={_fmt(v)}" for k, v in details.items()))
    if refit := best.get("refit"):
        table.add_row(
            "weights",
            f"refit on {refit['images']} training + validation images, "
            f"{refit['epochs']} {'L-BFGS rounds' if best['mode'] == 'linear' else 'epochs'} "
            "(validation figures: the trial, trained without them)",
        )
    if ens := r.get("ensemble"):
        for key, value in _ensemble_rows(ens):
            table.add_row(key, value)
    if (rank := r.get("ranking")) and rank.get("measure") == "cv":
        table.add_row(
            "ranking",
            f"{rank['folds']}-fold cross-validation, up to {rank['repeats']} repeats "
            f"({rank['why']})",
        )
    table.add_row("trials", str(r["trials"]))
    table.add_row("stop reason", r["stop_reason"])
    table.add_row("time", format_seconds(r["seconds"]))
    console.print(table)
    if r.get("excluded"):
        from autovision.search.exclude import describe

        console.print(describe(r["excluded"]), highlight=False)


def _ensemble_rows(ens: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the result table on the ensemble, the flips and the inference cost."""
    rows = []
    if ens.get("kept"):
        members = ", ".join(f"trial {m['trial']} x {m['weight']:.2f}" for m in ens["members"])
        rows.append(("ensemble", f"{members} ({ens['why']})"))
    else:
        rows.append(("ensemble", f"none: {ens.get('why', '')}"))
    tta = ens.get("tta") or {}
    rows.append(("flips", f"{'on' if tta.get('enabled') else 'off'}: {tta.get('why', '')}"))
    cost = ens.get("inference_cost") or {}
    if cost.get("ratio", 1.0) != 1.0 or cost.get("dropped"):
        rows.append(
            (
                "inference cost",
                f"{cost['ratio']:.2f}x the best trial's (at most {cost['max']:g}x)",
            )
        )
    return rows


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@handle_errors
def train(
    dataset: Annotated[str, typer.Argument(help="Dataset NAME (latest version) or NAME@N.")],
    budget: Annotated[
        str | None,
        typer.Option(help="Wall-clock budget: 90s, 10m, 2h (default 30m).", show_default=False),
    ] = None,
    budget_node_hours: Annotated[
        float | None,
        typer.Option(
            "--budget-node-hours",
            help="Budget in node-hours (1 = one hour of this machine).",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(help="Number of trials: reproducible for a seed.", show_default=False),
    ] = None,
    task: Annotated[
        Task, typer.Option(help="Single- or multi-label (auto: from the dataset).")
    ] = Task.auto,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model",
            help="Start from this earlier model (an id, NAME, NAME@N or NAME@ALIAS).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Model name: the result becomes its next version (default: the dataset's name).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the latest unfinished run of DATASET.")
    ] = False,
    exclude_issues: Annotated[
        str | None,
        typer.Option(
            "--exclude-issues",
            help="Leave the images these issues flag out of training and validation (never "
            "out of the test split), e.g. label_issues,exact_duplicates,outliers.",
            show_default=False,
        ),
    ] = None,
    ensemble: Annotated[
        Choice,
        typer.Option(
            help="auto: a weighted ensemble of the best trials when it beats the best one on "
            "validation (one ONNX graph); off: the best trial alone."
        ),
    ] = Choice.auto,
    tta: Annotated[
        Choice,
        typer.Option(
            help="auto: average each image with its mirror image when that helps on "
            "validation; off: never (for data where a mirror image means something else)."
        ),
    ] = Choice.auto,
    max_inference_cost: Annotated[
        float,
        typer.Option(
            "--max-inference-cost",
            help="The packaged graph's time per image at most this times the best trial's.",
        ),
    ] = 2.0,
    cv: Annotated[
        CVChoice,
        typer.Option(
            help="Rank linear trials by k-fold cross-validation over training + validation "
            "images; auto: when the rarest label has fewer than 50 validation images."
        ),
    ] = CVChoice.auto,
    cv_folds: Annotated[
        int, typer.Option("--cv-folds", help="Folds of the cross-validation (at least 2).")
    ] = 5,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Explore with N trial worker processes sharing one study (the cores are "
            "split between them); others join with `autovision worker`.",
            show_default=False,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Place the trial workers on this Ray cluster (HOST:PORT, ray://..., auto), as "
            "many as its resources hold (--workers caps it).",
            show_default=False,
        ),
    ] = None,
    cpus_per_trial: Annotated[
        float, typer.Option(min=0.0, help="With --ray: CPUs of each trial worker.")
    ] = 1.0,
    gpus_per_trial: Annotated[
        float, typer.Option(min=0.0, help="With --ray: GPUs of each trial worker.")
    ] = 0.0,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Search for the best model within a budget, write its package and register it."""
    from autovision.search.run import train as run_train

    ws = open_workspace(workspace)
    if ray_address is None and (cpus_per_trial != 1.0 or gpus_per_trial != 0.0):
        fail("--cpus-per-trial and --gpus-per-trial go with --ray")
    kwargs = dict(
        budget=budget,
        node_hours=budget_node_hours,
        trials=trials,
        task=task.value,
        base_model=base_model,
        seed=seed,
        resume=resume,
        name=name,
        exclude_issues=exclude_issues,
        ensemble=ensemble.value,
        tta=tta.value,
        max_inference_cost=max_inference_cost,
        cv=cv.value,
        cv_folds=cv_folds,
        workers=workers,
        ray_address=ray_address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
    )
    if resume and (budget or budget_node_hours or trials):
        err_console.print("note: --resume keeps the run's original budget", highlight=False)
    if resume and exclude_issues:
        err_console.print(
            "note: --resume keeps the images the run's first session left out", highlight=False
        )
    if json_output:
        result = run_train(ws, dataset, **kwargs)
        print_json(result.to_dict())
        return
    with ProgressView(console) as view:
        result = run_train(ws, dataset, progress=view, **kwargs)
    _print_result(result.to_dict())
