"""Schema migrations: the newest revision is exactly db.py's tables; databases made before
migrations (at any earlier revision) are detected, stamped and upgraded on open, once even
when several processes open them together; ``autovision workspace upgrade [--check]``. Each
test runs on SQLite and on an empty PostgreSQL database (``AUTOVISION_DB_URL``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from autovision.errors import SchemaError
from autovision.workspace import Workspace, schema
from autovision.workspace.db import Base, make_engine

from .test_old_schema import OLD_SCHEMA

pytestmark = pytest.mark.usefixtures("backend")

LEGACY = [
    r for r in schema.revisions() if hasattr(schema.script().get_revision(r).module, "TABLES")
]


def _diff(engine: sa.Engine, metadata: sa.MetaData = Base.metadata) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        opts = {"include_object": schema.include_object(conn.dialect.name), "compare_type": True}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], str | None]]:
    """SQLite in each workspace, or an empty PostgreSQL database as ``AUTOVISION_DB_URL``;
    yields ``new()``: the URL of another empty database (None on SQLite: the workspace's)."""
    if request.param == "sqlite":
        yield lambda: None
        return
    server = request.getfixturevalue("postgres")
    made: list[str] = []

    def new() -> str:
        made.append(server.create_database(empty=True))
        return made[-1]

    monkeypatch.setenv("AUTOVISION_DB_URL", new())
    yield new
    for url in made:
        server.drop_database(url)


def _pg() -> bool:
    return "AUTOVISION_DB_URL" in os.environ


def _url(root: Path) -> str:
    return os.environ.get("AUTOVISION_DB_URL") or f"sqlite:///{root / 'autovision.db'}"


def _db_at(root: Path, rev: str, *, versioned: bool = False) -> sa.Engine:
    """A database built by the migrations up to ``rev``; without its version table it is
    what ``create_all`` made at that commit, before migrations."""
    from alembic import command

    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(_url(root))
    with engine.begin() as conn:
        command.upgrade(schema.config(conn, root), rev)
        if not versioned:
            conn.execute(sa.text(f"DROP TABLE {schema.VERSION_TABLE}"))
    return engine


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_the_head_revision_is_exactly_the_metadata_of_db_py(tmp_path) -> None:
    engine = make_engine(_url(tmp_path))
    done = schema.upgrade(engine, tmp_path, create=False)  # every migration, no create_all
    assert done["applied"] == schema.revisions() and done["to"] == schema.head()
    assert _diff(engine) == []  # a table or column without its migration fails here

    extra = sa.MetaData()
    for table in Base.metadata.tables.values():
        dialect_only = {ix.name: ix._ddl_if for ix in table.indexes}  # to_metadata drops it
        for ix in table.to_metadata(extra).indexes:
            ix._ddl_if = dialect_only[ix.name]
    sa.Table("future_things", extra, sa.Column("id", sa.Integer, primary_key=True))
    assert [d[0] for d in _diff(engine, extra)] == ["add_table"]  # the check bites


def test_a_new_workspace_is_created_at_head(tmp_path) -> None:
    ws = Workspace(tmp_path / "ws")
    with ws.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    assert _diff(ws.engine) == []
    assert schema.status(ws.engine)["up_to_date"]


def test_every_revision_downgrades_and_upgrades_again(tmp_path) -> None:
    from alembic import command

    engine = make_engine(_url(tmp_path))
    schema.upgrade(engine, tmp_path, create=False)
    with engine.begin() as conn:
        command.downgrade(schema.config(conn, tmp_path), "base")
    assert not _tables(engine) & set(Base.metadata.tables)
    schema.upgrade(engine, tmp_path, create=False)
    assert _diff(engine) == []


@pytest.mark.parametrize("rev", LEGACY)
def test_a_database_made_before_migrations_is_detected_and_upgraded(tmp_path, rev) -> None:
    root = tmp_path / "ws"
    engine = _db_at(root, rev)
    with engine.begin() as conn:
        assert schema.detect(conn) == rev
        conn.execute(
            sa.text(
                "INSERT INTO models VALUES ('m-1', 'toy', 1, '2026-11-01 10:00:00.000000', "
                "'single-label', :p, 'ready', 0.9, '{}')"
            ),
            {"p": str(root / "models" / "m-1")},
        )
    (root / "models" / "m-1").mkdir(parents=True)
    status = schema.status(engine)
    assert (status["current"], status["detected"]) == (None, rev)
    assert status["pending"] == schema.revisions()[schema.revisions().index(rev) + 1 :]
    engine.dispose()

    ws = Workspace(root)
    with ws.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    assert _diff(ws.engine) == []
    assert ws.model("toy@1")["model"] == "m-1"  # numbered into model_versions on open
    assert ws.model_path("m-1") == root / "models" / "m-1"


def test_the_oldest_schema_of_the_old_test_is_stamped_at_the_baseline(tmp_path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    engine = make_engine(_url(root))
    old = OLD_SCHEMA
    if _pg():  # what create_all made on PostgreSQL at that commit
        old = old.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
        old = old.replace("DATETIME", "TIMESTAMP WITH TIME ZONE")
    with engine.begin() as conn:
        for statement in old.split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))
        assert schema.detect(conn) == "0001_baseline"
    done = schema.upgrade(engine, root)
    assert done["stamped"] == "0001_baseline" and done["applied"] == schema.revisions()[1:]
    assert set(Base.metadata.tables) <= _tables(engine)
    with engine.connect() as conn:  # outside the workspace: left as it was
        assert conn.execute(sa.text("SELECT path FROM models")).scalar_one() == "/nowhere"


def test_tables_of_later_commits_on_an_older_database_are_kept(tmp_path) -> None:
    """A branch's database: ``jobs`` (before its ``host`` column) without the console
    tables; detection stops at 0004, and 0005 adds the rest around what exists."""
    root = tmp_path / "ws"
    engine = _db_at(root, "0004_dataset_checks")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                (
                    "CREATE TABLE jobs (id VARCHAR(40) NOT NULL PRIMARY KEY, kind VARCHAR(16) NOT "
                    'NULL, status VARCHAR(16) NOT NULL, params JSON NOT NULL, "user" VARCHAR(200), '
                    "created_at DATETIME NOT NULL, started_at DATETIME, finished_at DATETIME, "
                    "pid INTEGER, heartbeat_at DATETIME, attempts INTEGER NOT NULL, result JSON, "
                    "error TEXT)"
                ).replace("DATETIME", "TIMESTAMP WITH TIME ZONE" if _pg() else "DATETIME")
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO jobs VALUES ('j-1', 'train', 'done', '{}', NULL, "
                "'2026-12-01 10:00:00', NULL, NULL, NULL, NULL, 1, NULL, NULL)"
            )
        )
        assert schema.detect(conn) == "0004_dataset_checks"
    engine.dispose()
    ws = Workspace(root)
    assert _diff(ws.engine) == []
    with ws.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, host FROM jobs")).all() == [("j-1", None)]


def test_a_database_newer_than_this_autovision_is_refused(tmp_path) -> None:
    ws = Workspace(tmp_path / "ws")
    with ws.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999_future'"))
    ws.engine.dispose()
    with pytest.raises(SchemaError, match="'9999_future', newer than this autovision"):
        Workspace(tmp_path / "ws")


def test_upgrade_on_open_can_be_turned_off(tmp_path, monkeypatch, backend) -> None:
    root = tmp_path / "ws"
    _db_at(root, "0003_prediction_log").dispose()
    monkeypatch.setenv(schema.ENV_AUTO_UPGRADE, "0")
    with pytest.raises(SchemaError, match="autovision workspace upgrade"):
        Workspace(root)
    Workspace(tmp_path / "new", db_url=backend())  # a new database is still created
    schema.upgrade_workspace(root)
    Workspace(root)


def test_optunas_own_alembic_version_is_left_alone(tmp_path) -> None:
    import optuna

    ws = Workspace(tmp_path / "ws")
    optuna.create_study(storage=optuna.storages.RDBStorage(ws.db_url), study_name="s")
    Workspace(tmp_path / "ws")  # opens again: Optuna's tables are not ours to judge
    assert _diff(ws.engine) == []
    with ws.engine.connect() as conn:
        optunas = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert optunas not in schema.revisions()


def test_several_processes_opening_an_old_workspace_upgrade_it_once(tmp_path) -> None:
    root = tmp_path / "ws"
    _db_at(root, "0001_baseline").dispose()
    engine = make_engine(_url(root))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO models VALUES ('m-old', 'toy', 1, '2026-11-01 10:00:00.000000', "
                "'single-label', '/nowhere', 'ready', 0.9, '{}')"
            )
        )
    engine.dispose()
    code = (
        "import sys; from autovision.workspace import Workspace; "
        "ws = Workspace(sys.argv[1]); print(ws.model('toy')['version'])"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                "PYTHONPATH": src,
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
                **({"AUTOVISION_DB_URL": _url(root)} if _pg() else {}),
            },
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _out, err in outs]
    assert [out.strip() for out, _err in outs] == ["1", "1", "1"]
    engine = make_engine(_url(root))
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).all() == [
            (schema.head(),)
        ]
        assert conn.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one() == 1
    assert _diff(engine) == []


def test_workspace_upgrade_cli_checks_then_upgrades(tmp_path) -> None:
    from autovision.cli.main import app

    runner = CliRunner()
    root = tmp_path / "ws"
    _db_at(root, "0002_model_versions_usage").dispose()

    def run(*args: str):
        return runner.invoke(app, ["workspace", "upgrade", *args, "--workspace", str(root)])

    r = run("--check", "--json")
    assert r.exit_code == 1, r.output
    found = json.loads(r.output)
    assert (found["current"], found["detected"], found["head"]) == (
        None,
        "0002_model_versions_usage",
        schema.head(),
    )
    assert found["pending"] == schema.revisions()[2:] and not found["up_to_date"]

    r = run("--json")
    assert r.exit_code == 0, r.output
    done = json.loads(r.output)
    assert done["up_to_date"] and done["upgrade"]["applied"] == schema.revisions()[2:]

    r = run("--check")
    assert r.exit_code == 0, r.output
    assert f"revision {schema.head()}, head {schema.head()}: up to date" in " ".join(
        r.output.split()
    )
    r = run()
    assert r.exit_code == 0 and "already at revision" in r.output

    if _pg():
        return  # below: a check makes no SQLite file
    fresh = tmp_path / "none"
    r = runner.invoke(app, ["workspace", "upgrade", "--check", "--workspace", str(fresh)])
    assert r.exit_code == 1 and "new database" in r.output
    assert not (fresh / "autovision.db").exists()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # autogenerates on SQLite
def test_new_revision_writes_what_db_py_adds(tmp_path, monkeypatch, backend) -> None:
    import shutil

    shutil.copytree(schema.MIGRATIONS, tmp_path / "migrations")
    monkeypatch.setattr(schema, "MIGRATIONS", tmp_path / "migrations")
    schema.script.cache_clear()
    widgets = sa.Table("widgets", Base.metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        path = schema.new_revision("add the widgets table")
        assert path.name == f"{len(schema.revisions()):04d}_add_the_widgets_table.py"
        text = path.read_text()
        assert "op.create_table('widgets'" in text
        assert f"down_revision = '{schema.revisions()[-2]}'" in text
        engine = make_engine(_url(tmp_path))
        schema.upgrade(engine, tmp_path, create=False)
        assert _diff(engine) == []
    finally:
        Base.metadata.remove(widgets)
        schema.script.cache_clear()
