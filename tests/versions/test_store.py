"""Named model versions: numbering, aliases, history, rollback and backfill."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from autovision.errors import ModelError
from autovision.security.audit import acting_as, read_audit
from autovision.versions import store
from autovision.workspace import Workspace
from autovision.workspace.db import ModelRow

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def test_numbering_and_default_alias(workspace, add_model) -> None:
    a, b = add_model(), add_model()
    c = add_model(name="other")
    vs = store.list_versions(workspace)
    assert [(v.name, v.version, v.id) for v in vs] == [
        ("other", 1, c),
        ("pets", 1, a),
        ("pets", 2, b),
    ]
    assert vs[1].aliases == ("default",) and vs[2].aliases == ()
    assert vs[2].ref == "pets@2"
    assert store.names(workspace) == ["other", "pets"]
    assert store.aliases(workspace, "pets") == {"default": 1}
    assert store.alias_target(workspace, "pets", "default") == (a, 1)
    assert store.alias_target(workspace, "pets", "production") is None


def test_name_defaults_to_dataset_and_is_checked(workspace, add_model) -> None:
    mid = add_model(name=None, dataset="flowers")
    assert store.resolve(workspace, "flowers@1").id == mid
    with pytest.raises(ModelError, match="invalid model name"):
        add_model(name="bad name")


def test_resolve_every_ref(workspace, add_model) -> None:
    a, b = add_model(), add_model()
    store.set_alias(workspace, "pets", 2, "production")
    assert store.resolve(workspace, a).version == 1
    assert store.resolve(workspace, "pets").id == a
    assert store.resolve(workspace, "pets@2").id == b
    assert store.resolve(workspace, "pets@production").id == b
    info = workspace.model("pets@production")
    assert (info["model"], info["name"], info["version"], info["aliases"]) == (
        b,
        "pets",
        2,
        ["production"],
    )
    assert workspace.model(a)["aliases"] == ["default"]
    with pytest.raises(ModelError, match=r"no version 7 \(versions: 1, 2\)"):
        store.resolve(workspace, "pets@7")
    with pytest.raises(ModelError, match=r"no alias 'staging' \(aliases: default, production\)"):
        store.resolve(workspace, "pets@staging")
    with pytest.raises(ModelError, match=r"no model 'cats'.*names: pets"):
        workspace.model("cats")


def test_set_delete_rollback_twice_then_refused(workspace, add_model) -> None:
    for _ in range(3):
        add_model()
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(workspace, "pets", "production")
    store.set_alias(workspace, "pets", 1, "production", reason="first")
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(workspace, "pets", "production")
    store.set_alias(workspace, "pets", 2, "production")
    store.set_alias(workspace, "pets", 3, "production")
    ev = store.rollback(workspace, "pets", "production", reason="3 is bad")
    assert (ev.kind, ev.from_version, ev.to_version) == ("rollback", 3, 2)
    ev = store.rollback(workspace, "pets", "production")
    assert (ev.from_version, ev.to_version) == (2, 1)
    assert store.aliases(workspace, "pets")["production"] == 1
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(workspace, "pets", "production")
    with pytest.raises(ModelError, match="already names version 1"):
        store.set_alias(workspace, "pets", 1, "production")
    with pytest.raises(ModelError, match="no version 9"):
        store.set_alias(workspace, "pets", 9, "production")


def test_delete_and_rollback_restores(workspace, add_model) -> None:
    add_model(), add_model()
    store.set_alias(workspace, "pets", 2, "staging")
    ev = store.delete_alias(workspace, "pets", "staging", reason="gone")
    assert (ev.kind, ev.from_version, ev.to_version) == ("delete", 2, None)
    assert "staging" not in store.aliases(workspace, "pets")
    with pytest.raises(ModelError, match="no alias 'staging'"):
        store.delete_alias(workspace, "pets", "staging")
    store.rollback(workspace, "pets", "staging")
    assert store.aliases(workspace, "pets")["staging"] == 2


def test_rollback_skips_entries_naming_the_current_version(workspace, add_model) -> None:
    add_model(), add_model(), add_model()
    store.set_alias(workspace, "pets", 1, "staging")
    store.set_alias(workspace, "pets", 2, "staging")
    store.delete_alias(workspace, "pets", "staging")
    store.set_alias(workspace, "pets", 2, "staging")
    ev = store.rollback(workspace, "pets", "staging")  # not 2 -> 2
    assert (ev.from_version, ev.to_version) == (2, 1)
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(workspace, "pets", "staging")
    # only entries naming the current version: refused, not a no-op move
    store.set_alias(workspace, "pets", 3, "prod")
    store.delete_alias(workspace, "pets", "prod")
    store.set_alias(workspace, "pets", 3, "prod")
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(workspace, "pets", "prod")


def test_rollback_target_says_where_rollback_goes(workspace, add_model) -> None:
    add_model(), add_model(), add_model()
    assert store.rollback_target(workspace, "pets", "staging") is None  # no such alias
    store.set_alias(workspace, "pets", 1, "staging")
    assert store.rollback_target(workspace, "pets", "staging") is None
    store.set_alias(workspace, "pets", 2, "staging")
    store.delete_alias(workspace, "pets", "staging")
    store.set_alias(workspace, "pets", 2, "staging")
    assert store.rollback_target(workspace, "pets", "staging") == 1  # skips 2 -> 2
    store.set_alias(workspace, "pets", 3, "staging")
    for expected in (2, 1):  # every step agrees with what rollback does
        target = store.rollback_target(workspace, "pets", "staging")
        assert target == expected
        assert store.rollback(workspace, "pets", "staging").to_version == target
    assert store.rollback_target(workspace, "pets", "staging") is None


def test_rollback_with_expect_version_refuses_a_stale_page(workspace, add_model) -> None:
    add_model(), add_model(), add_model()
    for v in (1, 2, 3):
        store.set_alias(workspace, "pets", v, "production")
    assert store.rollback(workspace, "pets", "production", expect_version=3).to_version == 2
    with pytest.raises(store.AliasMoved, match="names version 2, not the expected version 3"):
        store.rollback(workspace, "pets", "production", expect_version=3)  # the second click
    assert store.aliases(workspace, "pets")["production"] == 2


def test_default_is_moved_never_deleted(workspace, add_model) -> None:
    add_model(), add_model()
    with pytest.raises(ModelError, match="cannot be deleted"):
        store.delete_alias(workspace, "pets", "default")
    store.set_alias(workspace, "pets", 2, "default")
    assert store.resolve(workspace, "pets").version == 2
    store.rollback(workspace, "pets", "default")
    assert store.resolve(workspace, "pets").version == 1
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback(workspace, "pets", "default")


def test_history_with_metrics_actor_and_audit(workspace, add_model) -> None:
    add_model(test_accuracy=0.7), add_model(test_accuracy=0.9)
    store.set_alias(workspace, "pets", 1, "production")
    with acting_as(key_id="k-admin", client="server"):
        store.set_alias(workspace, "pets", 2, "production", reason="better")
    store.record_decision(
        workspace, "pets", "production", version=1, reason="worse", details={"gain": -0.2}
    )
    events = store.history(workspace, "pets", "production")
    assert [e.kind for e in events] == ["set", "set", "kept"]
    moved = events[1]
    assert (moved.from_version, moved.to_version, moved.reason) == (1, 2, "better")
    assert moved.actor == "k-admin"
    assert moved.from_metrics == {"accuracy": 0.7} and moved.to_metrics == {"accuracy": 0.9}
    assert events[2].details == {"gain": -0.2}
    assert store.aliases(workspace, "pets")["production"] == 2  # a decision moves nothing
    json.dumps([e.to_dict() for e in store.history(workspace, "pets")])
    assert [e.alias for e in store.history(workspace, "pets")][0] == "default"
    lines = [r for r in read_audit(workspace.audit_log_path) if r.get("event") == "alias"]
    assert [r["action"] for r in lines] == ["alias.set", "alias.set", "alias.kept"]
    assert lines[1]["key_id"] == "k-admin" and lines[1]["to_version"] == 2


def test_backfill_of_old_models(workspace, tmp_path) -> None:
    """A workspace from before versions: model rows only; numbered by creation time."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with workspace.Session.begin() as s:
        for i, (mid, ds) in enumerate([("m-b", "pets"), ("m-a", "pets"), ("m-c", "cars")]):
            s.add(
                ModelRow(
                    id=mid,
                    dataset=ds,
                    dataset_version=1,
                    task="single-label",
                    path=str(tmp_path),
                    created_at=t0 + timedelta(minutes=i),
                )
            )
    old = Workspace(workspace.root)
    assert store.resolve(old, "pets@1").id == "m-b"
    assert store.resolve(old, "pets@2").id == "m-a"
    assert store.resolve(old, "cars").id == "m-c"
    old.register_model(
        "m-new", dataset="pets", dataset_version=2, task="single-label", path=tmp_path
    )
    assert store.resolve(Workspace(workspace.root), "m-new").version == 3


def test_backfill_runs_before_a_new_version(workspace, tmp_path) -> None:
    with workspace.Session.begin() as s:
        s.add(
            ModelRow(id="m-old", dataset="pets", dataset_version=1, task="single-label", path="x")
        )
    fresh = Workspace(workspace.root)
    mv = fresh.register_model(
        "m-new", dataset="pets", dataset_version=1, task="single-label", path=tmp_path
    )
    assert mv.version == 2 and store.resolve(fresh, "pets").id == "m-old"


def _in_two_threads(work) -> None:
    """``work(0)`` and ``work(1)`` at once, in two threads; back when both are done."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_numbering_two_sessions(workspace, tmp_path) -> None:
    """Two Workspace objects (two connections) registering at once never share a number."""
    wss = [Workspace(workspace.root), Workspace(workspace.root)]
    errors: list[BaseException] = []

    def register(k: int) -> None:
        try:
            for i in range(6):
                wss[k].register_model(
                    f"m-{k}-{i}",
                    dataset="pets",
                    dataset_version=1,
                    task="single-label",
                    path=tmp_path,
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    _in_two_threads(register)
    assert not errors
    versions = [v.version for v in store.list_versions(workspace, "pets")]
    assert versions == list(range(1, 13))
    assert store.aliases(workspace, "pets") == {"default": 1}


def test_promote_is_a_move_rollback_undoes(workspace, add_model) -> None:
    add_model(), add_model()
    store.set_alias(workspace, "pets", 1, "production")
    ev = store.set_alias(workspace, "pets", 2, "production", kind="promote", details={"gain": 0.1})
    assert (ev.kind, ev.details) == ("promote", {"gain": 0.1})
    assert store.rollback(workspace, "pets", "production").to_version == 1
    with pytest.raises(ModelError, match="'set' or 'promote'"):
        store.set_alias(workspace, "pets", 2, "production", kind="rollback")


def test_concurrent_moves_keep_one_consistent_history(workspace, add_model) -> None:
    """Two sessions moving one alias at once: every history line starts where the last ended."""
    for _ in range(3):
        add_model()
    wss = [Workspace(workspace.root), Workspace(workspace.root)]
    errors: list[BaseException] = []

    def move(k: int) -> None:
        for i in range(8):
            try:
                store.set_alias(wss[k], "pets", 1 + (i + k) % 3, "production")
            except ModelError as exc:  # the other session got there first with the same version
                if "already names" not in str(exc):
                    errors.append(exc)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    _in_two_threads(move)
    assert not errors
    events = store.history(workspace, "pets", "production")
    for prev, ev in zip(events, events[1:], strict=False):
        assert ev.from_version == prev.to_version
    assert store.aliases(workspace, "pets")["production"] == events[-1].to_version


def test_a_registered_model_is_never_committed_without_its_version(workspace, tmp_path):
    """Another Workspace's backfill between the two steps of an old register_model numbered
    the model under its dataset's name; model row and version row now commit together."""
    from sqlalchemy import event, select

    from autovision.workspace.db import ModelVersionRow

    other = Workspace(workspace.root)
    seen: list[str] = []

    def after_commit(session) -> None:
        with other.Session() as s:
            numbered = select(ModelVersionRow.model_id)
            seen.extend(s.scalars(select(ModelRow.id).where(ModelRow.id.not_in(numbered))))
        other._model_versions_backfilled = False
        store.list_versions(other)  # its backfill, as another process would run it

    event.listen(workspace.Session, "after_commit", after_commit)
    try:
        mv = workspace.register_model(
            "m-x", dataset="pets", dataset_version=1, task="single-label", path=tmp_path, name="X"
        )
    finally:
        event.remove(workspace.Session, "after_commit", after_commit)
    assert seen == []
    assert (mv.name, mv.version) == ("X", 1)
    assert store.resolve(Workspace(workspace.root), "m-x").ref == "X@1"
