"""A throwaway PostgreSQL server for the tests (Debian's ``postgresql`` package).

One server per pytest session (:func:`server`, started on first use, stopped at exit), on
127.0.0.1 and a free port, in a temporary folder. ``initdb`` and ``pg_ctl`` refuse to run as
root: as root they run as the ``postgres`` user (or ``nobody``). Each test gets its own
database copied from a template (``CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY``),
so a test costs a file copy, not a server. Imported by ``tests/conftest.py`` only (inside
pytest: the venv may hold another package named ``tests``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN_DIRS = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)
EMPTY = "autovision_empty"  # template1 plus nothing: for migration tests
HEAD = "autovision_head"  # the workspace schema at head: what opening a workspace finds


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are; None when PostgreSQL is not installed."""
    extra = os.environ.get("AUTOVISION_TEST_PG_BIN")
    for d in ((extra,) if extra else ()) + BIN_DIRS:
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def missing_reason() -> str | None:
    """Why PostgreSQL tests cannot run here (None when they can)."""
    if bin_dir() is None:
        return (
            "PostgreSQL is not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on "
            "PATH): `make system-deps` installs Debian's postgresql"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")


class Server:
    """``initdb`` + ``pg_ctl start`` in a temporary folder; :meth:`stop` removes it all."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        if self.bin is None:
            raise RuntimeError(missing_reason())
        self.user = _unprivileged()
        self.tmp = Path(tempfile.mkdtemp(prefix="autovision-pg-"))
        self.data = self.tmp / "data"
        self.port = _free_port()
        self.log = self.tmp / "server.log"
        self._ids = itertools.count(1)
        self._engine = None
        self._started = False
        if self.user is not None:
            os.chown(self.tmp, self.user.pw_uid, self.user.pw_gid)
            self.tmp.chmod(0o700)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self.tmp)}
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.tmp,
            **kwargs,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}{log}"
            )
        return done

    def start(self) -> Server:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = " ".join(
            (
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.tmp}",
                "-c max_connections=300",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c shared_buffers=32MB",
                "-c max_wal_size=1GB",
            )
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self._started = True
        atexit.register(self.stop)
        self._watch()
        self._make_templates()
        return self

    def _watch(self) -> None:
        """A watchdog process: when this one dies without its atexit (killed), it stops the
        server (SIGQUIT: immediate shutdown) and removes the folder."""
        subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.data), str(self.tmp)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self):
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            self._engine = sa.create_engine(
                self.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        return self._engine

    def _sql(self, statement: str) -> None:
        import sqlalchemy as sa

        with self._admin().connect() as conn:
            conn.execute(sa.text(statement))

    def _make_templates(self) -> None:
        """``EMPTY`` (nothing in it) and ``HEAD`` (a workspace database at the head schema)."""
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        from autovision.workspace import schema

        self._sql(f"CREATE DATABASE {EMPTY} TEMPLATE template0 IS_TEMPLATE true")
        self._sql(f"CREATE DATABASE {HEAD} TEMPLATE {EMPTY} STRATEGY FILE_COPY")
        engine = sa.create_engine(self.url(HEAD), poolclass=NullPool)
        try:
            schema.upgrade(engine, self.tmp)
        finally:
            engine.dispose()
        self._sql(f"ALTER DATABASE {HEAD} IS_TEMPLATE true")

    def create_database(self, *, empty: bool = False) -> str:
        """A fresh database, at the head schema or (``empty``) with nothing in it; its URL."""
        name = f"t{os.getpid()}_{next(self._ids)}"
        template = EMPTY if empty else HEAD
        self._sql(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._started:
            self._started = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
                )
        shutil.rmtree(self.tmp, ignore_errors=True)


_WATCHDOG = """
import os, shutil, signal, sys, time
parent, data, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
while os.path.isdir(tmp):
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        try:
            with open(os.path.join(data, "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGQUIT)
            time.sleep(1)
        except (OSError, ValueError):
            pass
        shutil.rmtree(tmp, ignore_errors=True)
        break
    time.sleep(1)
"""

_server: Server | None = None


def server() -> Server:
    """The session's server, started on first use."""
    global _server
    if _server is None:
        t0 = time.monotonic()
        _server = Server().start()
        _server.started_in = time.monotonic() - t0
    return _server


def stop() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
