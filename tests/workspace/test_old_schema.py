"""A workspace made before model versions, the prediction log and usage records (the schema
of commit 2f6743f) opens: the new tables are added and its models are numbered."""

from __future__ import annotations

from sqlalchemy import create_engine, text

OLD_SCHEMA = """
CREATE TABLE datasets (id INTEGER PRIMARY KEY, name VARCHAR(200) UNIQUE, created_at DATETIME,
  next_item_id INTEGER);
CREATE TABLE dataset_versions (id INTEGER PRIMARY KEY, dataset_id INTEGER REFERENCES datasets(id),
  version INTEGER, parent_version INTEGER, created_at DATETIME, multi_label BOOLEAN,
  source TEXT, note TEXT, content_hash VARCHAR(64), params JSON, problems JSON,
  UNIQUE (dataset_id, version));
CREATE TABLE items (pk INTEGER PRIMARY KEY, version_id INTEGER REFERENCES dataset_versions(id),
  item_id INTEGER, sha256 VARCHAR(64), source TEXT, labels JSON, split VARCHAR(16), meta JSON,
  width INTEGER, height INTEGER, format VARCHAR(16), phash VARCHAR(32), stats JSON,
  UNIQUE (version_id, item_id));
CREATE TABLE models (id VARCHAR(64) PRIMARY KEY, dataset VARCHAR(200), dataset_version INTEGER,
  created_at DATETIME, task VARCHAR(32), path TEXT, status VARCHAR(32), score FLOAT, info JSON);
CREATE TABLE api_keys (id VARCHAR(32) PRIMARY KEY, role VARCHAR(16), key_hash VARCHAR(128)
  UNIQUE, created_at DATETIME, revoked BOOLEAN);
INSERT INTO models VALUES ('m-old', 'toy', 1, '2026-11-01 10:00:00.000000', 'single-label',
  '/nowhere', 'ready', 0.9, '{}');
"""


def test_a_workspace_of_the_old_schema_opens(tmp_path):
    from autovision.versions import store
    from autovision.workspace import Workspace

    root = tmp_path / "ws"
    root.mkdir()
    engine = create_engine(f"sqlite:///{root / 'autovision.db'}")
    with engine.begin() as conn:
        for statement in OLD_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(text(statement))
    engine.dispose()

    ws = Workspace(root)
    assert ws.model("toy")["model"] == "m-old"
    assert ws.model("toy@1")["version"] == 1
    assert store.aliases(ws, "toy") == {"default": 1}
    with ws.engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
    assert {"model_versions", "model_aliases", "prediction_log", "usage_records"} <= tables
    from autovision.workspace import schema

    with ws.engine.connect() as conn:
        assert schema.current(conn) == schema.head()  # stamped at the baseline, upgraded
