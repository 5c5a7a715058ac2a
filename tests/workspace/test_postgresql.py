"""What only a database server does to a workspace: connections it drops (a restart, an idle
timeout) are replaced when next used. The throwaway server is ``tests/_postgres.py``."""

from __future__ import annotations

from autovision.workspace import Workspace


def test_a_dropped_postgresql_connection_costs_a_reconnect_not_an_error(tmp_path, postgres):
    import sqlalchemy as sa

    url = postgres.create_database()
    try:
        ws = Workspace(tmp_path / "ws", db_url=url)
        ws.reserve_item_ids("d", 1)  # a pooled connection now exists
        with sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT").connect() as admin:
            killed = admin.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": url.rsplit("/", 1)[1]},
            ).scalar_one()
        assert killed >= 1
        assert ws.reserve_item_ids("d", 1) == 2  # as after a server restart
        ws.engine.dispose()
    finally:
        postgres.drop_database(url)
