"""The model card's record, gathered from the workspace (never typed by hand).

``build_card(ws, ref)`` returns plain JSON with the sections of Mitchell et al., "Model
Cards for Model Reporting" (2019): ``model`` (details), ``intended_use`` (with limitations
and ethical considerations, from :func:`set_card_info` or ``--card-file``), ``data``,
``training``, ``evaluation`` (the model's ``metrics.json``), ``fairness`` (its slices),
``monitoring`` (the latest stored drift checks) and ``lineage``. A section the records do
not hold is ``None`` and the card says so.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autovision.errors import AutovisionError

_log = logging.getLogger(__name__)
CARD_VERSION = 1
INFO_KEYS = ("intended_use", "limitations", "ethical_considerations")
MONITORING_SHOWN = 5
_OVERALL = ("accuracy", "top_k", "top_k_accuracy", "log_loss", "subset_accuracy",
            "hamming_loss")  # fmt: skip
_PER_LABEL = ("support", "precision", "recall", "f1", "roc_auc", "average_precision")


class CardError(AutovisionError):
    """Card information is unreadable or not of the expected shape (names file and key)."""


def check_card_info(info: Any, where: str = "card info") -> dict[str, Any]:
    """``info`` with only ``intended_use``, ``limitations``, ``ethical_considerations``,
    each a string or a list of strings; raises :class:`CardError` naming the bad key."""
    if not isinstance(info, dict):
        raise CardError(f"{where}: expected a mapping with keys {', '.join(INFO_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key not in INFO_KEYS:
            raise CardError(f"{where}: unknown key {key!r} (expected {', '.join(INFO_KEYS)})")
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise CardError(f"{where}: key {key!r} must be a string or a list of strings")
        out[key] = [v.strip() for v in items if v.strip()]
    return out


def read_card_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``--card-file`` (YAML or JSON, the ``INFO_KEYS``) as checked card info."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CardError(f"{path}: cannot read the card file ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CardError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("card"), dict):
        data = data["card"]  # a pipeline file's ``card:`` block
    return check_card_info(data, str(path))


def set_card_info(ws: Any, model_ref: str, info: dict[str, Any]) -> dict[str, Any]:
    """Store intended use, limitations and ethical considerations of a model version (in
    the model's info, key ``card``), rewrite the card in its package; returns what is kept."""
    mv = ws.model(model_ref)
    checked = check_card_info(info)
    ws.update_model_info(mv["model"], card=checked)
    write_package_card(ws, mv["model"])
    return checked


def refresh_package_card(ws: Any, model_ref: str) -> list[Path]:
    """:func:`write_package_card` after training or evaluation: a card that cannot be
    written is logged, not raised (it is derived; ``autovision models card`` remakes it)."""
    try:
        return write_package_card(ws, model_ref)
    except (AutovisionError, OSError, ValueError, KeyError, TypeError) as exc:
        _log.warning("model card of %s not written: %s: %s", model_ref, type(exc).__name__, exc)
        return []


def write_package_card(ws: Any, model_ref: str) -> list[Path]:
    """Write ``model_card.{json,md,html}`` into the model's package directory."""
    from autovision.cards.render import render_card

    card = build_card(ws, model_ref)
    folder = Path(card["model"]["path"])
    if not folder.is_dir():
        return []
    written = []
    for name, text in (
        ("model_card.json", json.dumps(card, indent=2, allow_nan=False) + "\n"),
        ("model_card.md", render_card(card, "md")),
        ("model_card.html", render_card(card, "html")),
    ):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
        written.append(folder / name)
    from autovision.workspace import packages

    packages.publish(ws, card["model"]["id"], folder)  # cards and metrics.json to the bucket
    return written


def build_card(ws: Any, model_ref: str, *, card_info: dict[str, Any] | None = None) -> dict:
    """The card record of ``model_ref`` (id, ``NAME@N``, ``NAME@ALIAS``); ``card_info``
    overrides the stored intended-use section."""
    import autovision

    mv = ws.model(model_ref)
    path = Path(mv["path"])
    meta = _read_json(path / "model.json") or {}
    metrics = _read_json(path / "metrics.json")
    dv = _dataset(ws, mv)
    return {
        "card_version": CARD_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generated_by": f"autovision {autovision.__version__}",
        "model": _details(mv, meta),
        "intended_use": card_info if card_info is not None else (mv.get("card") or None),
        "data": _data(ws, dv, mv, meta),
        "training": _training(mv, meta),
        "evaluation": _evaluation(metrics, meta),
        "fairness": _fairness(metrics),
        "monitoring": _monitoring(ws, mv),
        "lineage": _lineage(ws, mv, meta, dv),
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _dataset(ws: Any, mv: dict[str, Any]) -> Any:
    try:
        return ws.dataset(f"{mv['dataset']}@{mv['dataset_version']}")
    except AutovisionError:
        return None


def _details(mv: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "ref": f"{mv.get('name')}@{mv.get('version')}",
        "name": mv.get("name"),
        "version": mv.get("version"),
        "id": mv["model"],
        "aliases": mv.get("aliases", []),
        "task": mv["task"],
        "created_at": mv.get("created_at"),
        "labels": meta.get("labels"),
        "backbone": (meta.get("architecture") or {}).get("backbone"),
        "input_size": (meta.get("preprocessing") or {}).get("input_size"),
        "format": "ONNX + safetensors" if meta else None,
        "path": mv["path"],
    }


def _data(ws: Any, dv: Any, mv: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    stored = meta.get("dataset") or {}
    excluded = mv.get("excluded") or stored.get("excluded")
    out: dict[str, Any] = {
        "dataset": mv["dataset"],
        "version": mv["dataset_version"],
        "ref": f"{mv['dataset']}@{mv['dataset_version']}",
        "content_hash": stored.get("content_hash"),
        "excluded": (
            {k: excluded.get(k) for k in ("issues", "images", "by_issue")} if excluded else None
        ),
        "train_images": stored.get("train_images"),
        "validation_images": stored.get("validation_images"),
        "validation_source": stored.get("validation_source"),
    }
    if dv is None:
        return out | {"available": False}
    from autovision.checks.store import load_checks
    from autovision.data.report import checks_summary, dataset_report

    checks = load_checks(ws, dv)
    report = dataset_report(dv, checks=checks)
    out |= {
        "available": True,
        "content_hash": out["content_hash"] or dv.content_hash,
        "content_hash_now": dv.content_hash,
        "multi_label": dv.multi_label,
        "sources": _sources(ws, dv),
        "note": dv.note,
        "images": len(dv.items),
        "splits": report["splits"],
        "label_split_counts": report["label_split_counts"],
        "issues": checks_summary(report),
        "checks": {k: v.get("computed_at") for k, v in checks.items()},
        "import_problems": len(dv.problems),
    }
    return out


def _sources(ws: Any, dv: Any) -> list[dict[str, Any]]:
    """Where the version and its ancestors came from, newest first."""
    out, seen, cur = [], set(), dv
    while cur is not None and cur.version not in seen:
        seen.add(cur.version)
        out.append({"version": cur.version, "source": cur.source, "note": cur.note})
        parent = cur.parent_version
        cur = _dataset(ws, {"dataset": dv.name, "dataset_version": parent}) if parent else None
    return out


def _training(mv: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any] | None:
    search = meta.get("search") or {}
    best = meta.get("hyperparameters") or mv.get("best")
    if not (search or best):
        return None
    return {
        "search_space": search.get("space"),
        "chosen": best,
        "budget": search.get("budget"),
        "compute": {
            "device": search.get("device"),
            "training_seconds": meta.get("training_seconds", mv.get("seconds")),
            "trials": meta.get("trials", mv.get("trials")),
            "sessions": search.get("sessions"),
        },
        "stop_reason": meta.get("stop_reason", mv.get("stop_reason")),
        "base_model": meta.get("base_model", mv.get("base_model")),
        "validation": meta.get("validation", mv.get("validation")),
        "validation_of": meta.get("validation_of"),
    }


def _evaluation(m: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    if not m:
        return None
    overall = {k: m[k] for k in _OVERALL if k in m}
    for avg in ("macro", "micro", "weighted"):
        for k in ("precision", "recall", "f1"):
            if avg in m:
                overall[f"{avg}_{k}"] = m[avg][k]
    overall["roc_auc_macro"] = m["roc_auc"]["macro"]
    overall["average_precision_macro"] = m["average_precision"]["macro"]
    cal = m["calibration"]
    return {
        "dataset": m["dataset"],
        "split": m["split"],
        "images": m["images"],
        "evaluated_at": m["evaluated_at"],
        "overall": overall,
        "per_label": {lab: {k: e.get(k) for k in _PER_LABEL} for lab, e in m["per_label"].items()},
        "calibration": {k: cal.get(k) for k in ("ece", "mce", "kind", "n_bins")},
        "thresholds": meta.get("thresholds"),
        "decision": (
            "top label (argmax)"
            if m["task"] == "single-label"
            else "every label whose score reaches its threshold"
        ),
        "notes": m.get("notes", []),
    }


def _fairness(m: dict[str, Any] | None) -> dict[str, Any] | None:
    slices = (m or {}).get("slices")
    if not slices:
        return None
    out = {}
    for key, s in slices.items():
        out[key] = {
            "max_gap": s["max_gap"],
            "min_support": s["min_support"],
            "values": [
                {
                    k: v[k]
                    for k in ("value", "images", "accuracy", "accuracy_ci", "insufficient_support")
                }  # fmt: skip
                for v in s["values"]
            ],
            "gaps": s["gaps"],
            "flagged": s["flagged"],
            "insufficient_support": s["insufficient_support"],
        }
    return out


def _monitoring(ws: Any, mv: dict[str, Any]) -> list[dict[str, Any]]:
    from autovision.monitoring.history import checks

    if not mv.get("name"):
        return []
    mine = [c for c in checks(ws, mv["name"], limit=200) if c["model_id"] == mv["model"]]
    keep = ("created_at", "verdict", "samples", "version")
    return [{k: c.get(k) for k in keep} for c in mine[:MONITORING_SHOWN]]


def _lineage(ws: Any, mv: dict[str, Any], meta: dict[str, Any], dv: Any) -> dict[str, Any]:
    from autovision.versions import list_versions

    base = meta.get("base_model", mv.get("base_model"))
    base_ref = None
    if base:
        try:
            b = ws.model(base)
            base_ref = f"{b.get('name')}@{b.get('version')}"
        except AutovisionError:
            base_ref = None
    earlier = [
        v.ref for v in list_versions(ws, mv["name"]) if v.version < mv["version"]
    ] if mv.get("name") else []  # fmt: skip
    search = meta.get("search") or {}
    return {
        "previous_versions": earlier,
        "base_model": base,
        "base_model_ref": base_ref,
        "dataset_parent_version": dv.parent_version if dv is not None else None,
        "code_version": f"autovision {(meta.get('library_versions') or {}).get('autovision')}"
        if (meta.get("library_versions") or {}).get("autovision")
        else None,
        "library_versions": meta.get("library_versions"),
        "seed": meta.get("seed"),
        "run_id": search.get("run_id", mv.get("run_id")),
        "study": search.get("study"),
    }
