"""The workspace database's schema version, kept by Alembic (``migrations/``).

Opening a workspace calls :func:`ensure`: a new database is created at the head revision, a
database made before migrations is stamped with the newest revision whose tables it holds
(:func:`detect`) and upgraded, an older one is upgraded. Upgrades run in one transaction
under a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so several
processes opening one workspace at once upgrade it once. ``AUTOVISION_AUTO_UPGRADE=0``
makes opening an outdated database an error instead (``autovision workspace upgrade``).
The version lives in its own table: Optuna keeps ``alembic_version`` in the same database.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from autovision.errors import SchemaError

VERSION_TABLE = "autovision_alembic_version"
ENV_AUTO_UPGRADE = "AUTOVISION_AUTO_UPGRADE"
MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK = 0x61766973  # pg_advisory_xact_lock key of upgrades ("avis")


@lru_cache(maxsize=1)
def script():  # -> alembic.script.ScriptDirectory
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    return str(script().get_current_head())


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    return [r.revision for r in reversed(list(script().walk_revisions()))]


def config(connection: Connection | None = None, root: str | os.PathLike[str] | None = None):
    """An Alembic ``Config`` built in code (no ``alembic.ini``); ``env.py`` runs on
    ``connection``; ``root`` is the workspace folder the path migrations need."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("file_template", "%%(rev)s")  # versions/0007_add_foo.py
    cfg.attributes["connection"] = connection
    cfg.attributes["workspace_root"] = str(root) if root is not None else None
    return cfg


def include_object(dialect: str) -> Callable[..., bool]:
    """Autogenerate's filter: what the database holds beyond autovision's tables (Optuna's,
    the version table) is not compared, nor an index whose DDL is for another dialect."""
    from autovision.workspace.db import Base

    ours = Base.metadata.tables

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return not reflected or name in ours
        table = getattr(obj, "table", None)
        if reflected and table is not None and table.name not in ours:
            return False
        ddl_if = getattr(obj, "_ddl_if", None)
        return not (ddl_if is not None and ddl_if.dialect and ddl_if.dialect != dialect)

    return include


def current(conn: Connection) -> str | None:
    """The revision stamped in the database; None when it has no version yet."""
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def _tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _is_new(conn: Connection) -> bool:
    from autovision.workspace.db import Base

    return not (_tables(conn) & set(Base.metadata.tables))


def detect(conn: Connection) -> str | None:
    """The newest revision whose tables (each old revision's ``TABLES``) the database holds,
    with all earlier ones': what a database made before migrations is stamped with."""
    tables = _tables(conn)
    found = None
    for rev in revisions():
        needed = getattr(script().get_revision(rev).module, "TABLES", None)
        if needed is None or not set(needed) <= tables:
            break
        found = rev
    return found


def _check_known(rev: str | None, where: str) -> None:
    if rev is not None and rev not in revisions():
        raise SchemaError(
            f"{where}: the database is at schema revision {rev!r}, newer than this autovision "
            f"knows (head {head()!r}); upgrade autovision"
        )


def _after(rev: str | None) -> list[str]:
    order = revisions()
    return order if rev is None else order[order.index(rev) + 1 :]


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the upgrade lock until it commits."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        # pysqlite does not begin before DDL: a separate engine that begins IMMEDIATE (the
        # write lock, waited for) makes the whole upgrade one transaction.
        locking = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 120})

        @sa.event.listens_for(locking, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            for pragma in ("journal_mode=WAL", "busy_timeout=120000", "foreign_keys=OFF"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(locking, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            with locking.begin() as conn:
                yield conn
        finally:
            locking.dispose()
        return
    with engine.begin() as conn:
        if url.get_backend_name() == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        yield conn


def _stamp(conn: Connection, rev: str) -> None:
    from alembic.runtime.migration import MigrationContext

    MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).stamp(script(), rev)


def upgrade(
    engine: Engine, root: str | os.PathLike[str] | None = None, *, create: bool = True
) -> dict[str, Any]:
    """Bring the database to the head revision; what was done. A new database is made with
    ``create_all`` and stamped (``create=False``: by running every migration instead)."""
    with _locked(engine) as conn:
        before = current(conn)
        _check_known(before, _where(engine))
        out: dict[str, Any] = {
            "from": before,
            "to": head(),
            "created": False,
            "stamped": None,
            "applied": [],
        }
        if before == head():
            return out
        if before is None and _is_new(conn):
            out["created"] = True
            if create:
                from autovision.workspace.db import Base

                Base.metadata.create_all(conn)
                _stamp(conn, head())
                return out
        elif before is None:
            out["stamped"] = detect(conn)
            if out["stamped"] is not None:
                _stamp(conn, out["stamped"])
        from alembic import command

        start = before or out["stamped"]
        command.upgrade(config(conn, root), "head")
        out["applied"] = _after(start)
        return out


def status(engine: Engine) -> dict[str, Any]:
    """The database's revision against this autovision's head, and what an upgrade runs."""
    with engine.connect() as conn:
        now = current(conn)
        new = now is None and _is_new(conn)
        detected = detect(conn) if now is None and not new else None
    _check_known(now, _where(engine))
    pending = [] if new else _after(now or detected)
    return {
        "database": _where(engine),
        "current": now,
        "detected": detected,
        "head": head(),
        "new": new,
        "pending": pending,
        "up_to_date": now == head(),
    }


def auto_upgrade() -> bool:
    return os.environ.get(ENV_AUTO_UPGRADE, "1").strip().lower() not in ("0", "false", "no", "off")


def ensure(engine: Engine, root: str | os.PathLike[str] | None = None) -> None:
    """What opening a workspace does: nothing when at head (one query), else create or
    upgrade (unless ``AUTOVISION_AUTO_UPGRADE=0``, then only a new database is created)."""
    with engine.connect() as conn:
        now = current(conn)
        if now == head():
            return
        new = now is None and _is_new(conn)
    _check_known(now, _where(engine))
    if not new and not auto_upgrade():
        raise SchemaError(
            f"{_where(engine)}: the workspace database is at schema revision "
            f"{now or 'none (made before migrations)'}, this autovision needs {head()!r}: run "
            f"`autovision workspace upgrade` ({ENV_AUTO_UPGRADE}=0 turned the upgrade on "
            "open off)"
        )
    upgrade(engine, root)


def upgrade_workspace(
    path: str | os.PathLike[str] | None = None,
    *,
    db_url: str | None = None,
    check: bool = False,
) -> dict[str, Any]:
    """``autovision workspace upgrade``: the workspace's :func:`status`, and with
    ``check=False`` the :func:`upgrade` done (``"upgrade"``) and the status after it."""
    from autovision.workspace import settings
    from autovision.workspace.db import make_engine

    root = settings.workspace_path(path)
    url = settings.db_url(root, db_url)
    engine = make_engine(url)
    try:
        if check and engine.url.get_backend_name() == "sqlite":
            db = engine.url.database
            if db and db != ":memory:" and not Path(db).exists():  # nothing made by a check
                return {
                    "workspace": str(root),
                    "database": _where(engine),
                    "current": None,
                    "detected": None,
                    "head": head(),
                    "new": True,
                    "pending": [],
                    "up_to_date": False,
                }
        if not check:
            root.mkdir(parents=True, exist_ok=True)
            done = upgrade(engine, root)
            return {"workspace": str(root), **status(engine), "upgrade": done}
        return {"workspace": str(root), **status(engine)}
    finally:
        engine.dispose()


def new_revision(message: str, *, autogenerate: bool = True) -> Path:
    """Write ``migrations/versions/NNNN_<slug>.py``: what ``db.py``'s metadata holds beyond
    the head revision (autogenerated against a scratch SQLite database at head)."""
    from alembic import command

    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    rev_id = f"{len(revisions()) + 1:04d}_{slug}"[:32].rstrip("_")
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{tmp}/head.db", poolclass=NullPool)
        upgrade(engine, tmp, create=False)
        with engine.begin() as conn:
            command.revision(config(conn, tmp), message, autogenerate=autogenerate, rev_id=rev_id)
        engine.dispose()
    script.cache_clear()
    return MIGRATIONS / "versions" / f"{rev_id}.py"


if __name__ == "__main__":  # python -m autovision.workspace.schema "add the foo table"
    if len(sys.argv) != 2:
        sys.exit('usage: python -m autovision.workspace.schema "what the revision adds"')
    print(new_revision(sys.argv[1]))
