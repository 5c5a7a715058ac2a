"""Each audited action leaves one line (two for training) with who, what and the outcome."""

from __future__ import annotations

import getpass

import pytest

from autovision.errors import DatasetError
from autovision.security import read_audit
from autovision.security.audit import acting_as, audit_event, audited, verify_log

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def events(ws, action: str | None = None) -> list[dict]:
    return [e for e in read_audit(ws.audit_log_path) if action in (None, e.get("action"))]


def test_import_edit_and_export_are_audited(workspace, image_folder, tmp_path):
    from autovision.data.edit import exclude
    from autovision.data.export import export_dataset
    from autovision.data.importer import import_dataset

    source = image_folder(per_label=4)
    result = import_dataset(workspace, "pets", source, workers=1)
    (line,) = events(workspace, "dataset.import")
    assert line["outcome"] == "ok" and line["event"] == "dataset"
    assert line["name"] == "pets" and line["source"] == str(source)
    assert line["version"] == result.version.ref and line["images"] == 8
    assert line["user"] == getpass.getuser() and line["time"] and "seconds" in line

    exclude(workspace, "pets", ids=[result.version.items[0].id])
    (line,) = events(workspace, "dataset.exclude")
    assert line["outcome"] == "ok" and line["ref"] == "pets" and line["version"] == "pets@2"

    export_dataset(workspace, "pets@2", tmp_path / "out", format="csv")
    (line,) = events(workspace, "dataset.export")
    assert line["outcome"] == "ok" and line["images"] == 7 and line["format"] == "csv"
    assert verify_log(workspace.audit_log_path).ok


def test_a_failed_action_is_audited_with_its_error(workspace, tmp_path):
    from autovision.data.importer import import_dataset

    with pytest.raises(DatasetError):
        import_dataset(workspace, "pets", tmp_path / "missing")
    (line,) = events(workspace, "dataset.import")
    assert line["outcome"] == "error" and line["error_type"]
    assert "missing" in line["error"]


def test_model_export_failure_is_audited(workspace, tmp_path):
    from autovision.models.export import export_model

    with pytest.raises(Exception):  # noqa: B017 - whatever the missing model raises
        export_model(workspace, "m-missing", tmp_path / "out", format="onnx")
    (line,) = events(workspace, "model.export")
    assert line["outcome"] == "error" and line["model_id"] == "m-missing"


def test_audit_event_and_acting_as(workspace):
    audit_event(workspace, "alias.move", alias="prod", to="m-2")
    with acting_as(key_id="k-1", client="10.0.0.1"):
        audit_event(workspace, "console.login", "error", error="bad password")
    first, second = events(workspace)
    assert first["event"] == "alias" and first["outcome"] == "ok" and first["alias"] == "prod"
    assert first["user"] == getpass.getuser()
    assert second["key_id"] == "k-1" and "user" not in second
    assert second["outcome"] == "error" and second["error"] == "bad password"


def test_audited_writes_start_and_end(tmp_path):
    log = tmp_path / "audit.log"

    @audited("job", start=True, args=("n",), result=lambda r: {"got": r}, ws="where")
    def job(where, n):
        if n < 0:
            raise ValueError("negative n")
        return n * 2

    assert job(log, 3) == 6
    with pytest.raises(ValueError):
        job(log, -1)
    lines = list(read_audit(log))
    assert [(e["action"], e["outcome"]) for e in lines] == [
        ("job.start", "ok"), ("job.end", "ok"), ("job.start", "ok"), ("job.end", "error")
    ]  # fmt: skip
    assert lines[1]["got"] == 6 and lines[1]["n"] == 3
    assert lines[3]["error"] == "negative n"


def test_keys_create_is_audited(workspace):
    from typer.testing import CliRunner

    from autovision.cli.main import app

    r = CliRunner().invoke(app, ["keys", "create", "--workspace", str(workspace.root)])
    assert r.exit_code == 0
    (line,) = events(workspace, "keys.create")
    assert line["event"] == "admin" and line["outcome"] == "ok" and line["target"]
    assert line["user"] == getpass.getuser() and line["client"] == "cli"


def test_training_start_and_end_are_audited(workspace, monkeypatch):
    from autovision.search import run

    monkeypatch.setattr(run, "_import_libraries", lambda: None)  # fails before needing them
    with pytest.raises(DatasetError):
        run.train(workspace, "nope@3", trials=1)
    start, end = events(workspace)
    assert start["action"] == "train.start" and start["dataset_ref"] == "nope@3"
    assert start["trials"] == 1 and start["outcome"] == "ok"
    assert end["action"] == "train.end" and end["outcome"] == "error" and "nope" in end["error"]


def test_model_export_is_audited(workspace, tmp_path):
    import torch

    from autovision.models.export import export_model
    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    path = save_package(
        tmp_path / "m-1",
        create_model("compact_cnn", num_classes=2, pretrained=False),
        labels=("a", "b"),
        task="single-label",
        backbone="compact_cnn",
        preprocessing=Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std),
    )
    export_model(workspace, str(path), tmp_path / "out", format="onnx")
    (line,) = events(workspace, "model.export")
    assert line["event"] == "model" and line["outcome"] == "ok" and line["format"] == "onnx"
    assert "model.onnx" in line["files"]


def test_no_workspace_means_no_line_and_no_error(tmp_path):
    @audited("job")
    def job(ws):
        return 1

    assert job(object()) == 1
    assert audit_event(None, "x") is None
    assert audit_event(tmp_path / "no-dir" / "a.log", "x")["action"] == "x"


def test_an_unwritable_log_does_not_fail_the_action(tmp_path, caplog):
    (tmp_path / "log-is-a-dir").mkdir()

    @audited("job", ws="where")
    def job(where):
        return 2

    assert job(tmp_path / "log-is-a-dir") == 2
    assert "cannot write the audit log" in caplog.text
