"""Named model versions and their aliases in the workspace database.

Every trained model package belongs to a named model (default: its dataset's name) and gets
the next version number within it; aliases (``production``, the always-set ``default``) name
one version each, and every move is an append-only :class:`AliasEvent` that ``rollback``
replays as a stack. Not the backbone registry of :mod:`autovision.models.registry`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from autovision.errors import ModelError
from autovision.security.audit import actor as current_actor
from autovision.security.audit import audit_event
from autovision.versions.refs import DEFAULT_ALIAS, check_alias, check_model_name, parse_ref
from autovision.workspace.db import (
    AliasEventRow,
    AliasRow,
    ModelRow,
    ModelVersionRow,
    utcnow,
)

ABSENT = "absent"  # ``expect_version=ABSENT``: the alias must not exist yet
MOVES = ("set", "promote", "delete")  # the kinds that push the previous version for rollback
KINDS = (*MOVES, "rollback", "kept")
_RETRIES = 30


@dataclass(frozen=True)
class ModelVersion:
    """One version of a named model: ``NAME@VERSION`` is the model package ``id``."""

    id: str
    name: str
    version: int
    aliases: tuple[str, ...]
    dataset: str
    dataset_version: int
    task: str
    created_at: str
    path: str
    test_metrics: dict[str, Any] | None
    info: dict[str, Any] = field(repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "aliases": list(self.aliases),
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "task": self.task,
            "created_at": self.created_at,
            "path": self.path,
            "test_metrics": self.test_metrics,
        }


@dataclass(frozen=True)
class AliasEvent:
    """One line of an alias's history. ``kept``: ``to_version`` was a candidate not promoted
    (``from_version`` stayed); ``delete``: ``to_version`` is None."""

    id: int
    time: str
    name: str
    alias: str
    kind: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    from_metrics: dict[str, Any] | None = None
    to_metrics: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "name": self.name,
            "alias": self.alias,
            "kind": self.kind,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor,
            "reason": self.reason,
            "from_metrics": self.from_metrics,
            "to_metrics": self.to_metrics,
            "details": self.details,
        }


def actor_name() -> str:
    """The API key id inside ``acting_as(key_id=...)`` (the server), else the local user."""
    who = current_actor()
    return str(who.get("key_id") or who.get("user") or who.get("client") or "unknown")


# ---- numbering ----------------------------------------------------------------------------


def _retrying(fn: Any) -> Any:
    """Run a write transaction again when another process took the same number first."""
    for attempt in range(_RETRIES):
        try:
            return fn()
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
            time.sleep(random.uniform(0.005, 0.05))
    return None  # pragma: no cover


def _insert_version(s: Any, model_id: str, name: str, *, who: str, reason: str) -> int:
    last = s.scalar(
        select(ModelVersionRow.version)
        .where(ModelVersionRow.name == name)
        .order_by(ModelVersionRow.version.desc())
        .limit(1)
    )
    version = (last or 0) + 1
    s.add(ModelVersionRow(model_id=model_id, name=name, version=version))
    if version == 1:
        s.add(AliasRow(name=name, alias=DEFAULT_ALIAS, model_id=model_id, version=1))
        s.add(
            AliasEventRow(
                name=name,
                alias=DEFAULT_ALIAS,
                kind="set",
                from_version=None,
                to_version=1,
                actor=who,
                reason=reason,
                details={},
            )
        )
    s.flush()
    return version


def _backfill(ws: Any, *, exclude: str | None = None, force: bool = False) -> None:
    """Number the models of an older workspace (no version rows yet) under their dataset's
    name, oldest first; checked once per Workspace object unless forced."""
    if getattr(ws, "_model_versions_backfilled", False) and exclude is None and not force:
        return

    def run() -> None:
        with ws.Session.begin() as s:
            numbered = select(ModelVersionRow.model_id)
            rows = list(
                s.execute(
                    select(ModelRow.id, ModelRow.dataset)
                    .where(ModelRow.id.not_in(numbered))
                    .order_by(ModelRow.created_at, ModelRow.id)
                )
            )
            for model_id, dataset in rows:
                if model_id == exclude:
                    continue
                _insert_version(s, model_id, dataset, who="autovision", reason="backfilled")

    _retrying(run)
    ws._model_versions_backfilled = True


def add_version(ws: Any, model_id: str, name: str) -> ModelVersion:
    """Give a registered model the next version of ``name`` (the first one gets ``default``)."""
    check_model_name(name)
    _backfill(ws, exclude=model_id)  # older models first, so numbers follow creation order
    who = actor_name()

    def run() -> None:
        with ws.Session.begin() as s:
            if s.get(ModelRow, model_id) is None:
                raise ModelError(f"no model {model_id!r} to add as a version of {name!r}")
            if s.get(ModelVersionRow, model_id) is None:
                _insert_version(s, model_id, name, who=who, reason="first version")

    _retrying(run)
    return _by_id(ws, model_id)  # audited by its caller (``train`` records NAME@VERSION)


def register_version(ws: Any, row: ModelRow, name: str) -> ModelVersion:
    """Record a model package row and make it the next version of ``name``, both in one
    transaction (so no other process's backfill numbers it under its dataset's name)."""
    check_model_name(name)
    _backfill(ws, exclude=row.id)  # older models first, so numbers follow creation order
    who = actor_name()

    def run() -> None:
        with ws.Session.begin() as s:
            s.merge(row)  # copies ``row`` into the session; ``row`` itself stays transient
            s.flush()
            if s.get(ModelVersionRow, row.id) is None:
                _insert_version(s, row.id, name, who=who, reason="first version")

    _retrying(run)
    return _by_id(ws, row.id)  # audited by its caller (``train`` records NAME@VERSION)


# ---- reading ------------------------------------------------------------------------------


def _model_info(row: ModelRow, root: Any) -> dict[str, Any]:
    from autovision.workspace._workspace import _model_dict

    return _model_dict(row, root)


def _build(row: ModelRow, vrow: ModelVersionRow, alias_names: list[str], root: Any) -> ModelVersion:
    tags = tuple(sorted(alias_names, key=lambda a: (a != DEFAULT_ALIAS, a)))
    info = {
        **_model_info(row, root),
        "name": vrow.name,
        "version": vrow.version,
        "aliases": list(tags),
    }
    metrics = info.get("test_metrics")
    return ModelVersion(
        id=row.id,
        name=vrow.name,
        version=vrow.version,
        aliases=tags,
        dataset=row.dataset,
        dataset_version=row.dataset_version,
        task=row.task,
        created_at=row.created_at.isoformat(),
        path=info["path"],  # resolved against the workspace root
        test_metrics=dict(metrics) if isinstance(metrics, dict) else None,
        info=info,
    )


def _query(ws: Any, *conditions: Any) -> list[ModelVersion]:
    with ws.Session() as s:
        pairs = list(
            s.execute(
                select(ModelRow, ModelVersionRow)
                .join(ModelVersionRow, ModelVersionRow.model_id == ModelRow.id)
                .where(*conditions)
                .order_by(ModelVersionRow.name, ModelVersionRow.version)
            )
        )
        wanted = {v.name for _, v in pairs}
        by_model: dict[str, list[str]] = {}
        if wanted:
            for a in s.scalars(select(AliasRow).where(AliasRow.name.in_(wanted))):
                by_model.setdefault(a.model_id, []).append(a.alias)
        return [_build(m, v, by_model.get(m.id, []), ws.root) for m, v in pairs]


def _by_id(ws: Any, model_id: str) -> ModelVersion:
    found = _query(ws, ModelRow.id == model_id)
    if not found:
        raise ModelError(f"model {model_id!r} has no version")
    return found[0]


def names(ws: Any) -> list[str]:
    """Every model name, sorted."""
    _backfill(ws)
    with ws.Session() as s:
        return list(s.scalars(select(ModelVersionRow.name).distinct().order_by("name")))


def list_versions(ws: Any, name: str | None = None) -> list[ModelVersion]:
    """Every version (of ``name``), by name then version."""
    _backfill(ws)
    return _query(ws, *(() if name is None else (ModelVersionRow.name == name,)))


def version_of(ws: Any, model_id: str) -> ModelVersion | None:
    """The version a model id is, or None for an unknown id."""
    _backfill(ws)
    found = _query(ws, ModelRow.id == model_id)
    return found[0] if found else None


def _known_names(ws: Any) -> str:
    return ", ".join(names(ws)) or "none"


def _need_name(ws: Any, name: str) -> list[int]:
    with ws.Session() as s:
        versions = list(
            s.scalars(
                select(ModelVersionRow.version)
                .where(ModelVersionRow.name == name)
                .order_by(ModelVersionRow.version)
            )
        )
    if not versions:
        raise ModelError(f"no model named {name!r} (names: {_known_names(ws)})")
    return versions


def aliases(ws: Any, name: str) -> dict[str, int]:
    """``{alias: version}`` of a name (``default`` first)."""
    _backfill(ws)
    _need_name(ws, name)
    with ws.Session() as s:
        rows = list(s.scalars(select(AliasRow).where(AliasRow.name == name)))
    return {
        r.alias: r.version for r in sorted(rows, key=lambda r: (r.alias != DEFAULT_ALIAS, r.alias))
    }


def alias_target(ws: Any, name: str, alias: str) -> tuple[str, int] | None:
    """``(model_id, version)`` an alias names now, in one primary-key lookup (what a server
    following an alias polls)."""
    _backfill(ws)
    with ws.Session() as s:
        row = s.execute(
            select(AliasRow.model_id, AliasRow.version).where(
                AliasRow.name == name, AliasRow.alias == alias
            )
        ).first()
    return None if row is None else (row[0], int(row[1]))


def resolve(ws: Any, ref: str) -> ModelVersion:
    """A model id, ``NAME@N``, ``NAME@ALIAS`` or ``NAME`` (its ``default``) -> the version."""
    _backfill(ws)
    text = (ref or "").strip()
    found = _query(ws, ModelRow.id == text) if text else []
    if not found and text:
        with ws.Session() as s:
            unnumbered = s.get(ModelRow, text) is not None
        if unnumbered:  # registered behind this Workspace object's back
            _backfill(ws, force=True)
            found = _query(ws, ModelRow.id == text)
    if found:
        return found[0]
    try:
        r = parse_ref(text)
    except ModelError as exc:
        raise ModelError(f"no model {ref!r}: not a model id, and {exc}") from None
    versions = _query(ws, ModelVersionRow.name == r.name)
    if not versions:
        raise ModelError(
            f"no model {ref!r}: not a model id nor a model name (names: {_known_names(ws)})"
        )
    if r.version is not None:
        for mv in versions:
            if mv.version == r.version:
                return mv
        known = ", ".join(str(v.version) for v in versions)
        raise ModelError(f"model {r.name!r} has no version {r.version} (versions: {known})")
    for mv in versions:
        if r.alias in mv.aliases:
            return mv
    known = ", ".join(sorted({a for v in versions for a in v.aliases}))
    raise ModelError(f"model {r.name!r} has no alias {r.alias!r} (aliases: {known})")


# ---- moving aliases -----------------------------------------------------------------------


def _event(row: AliasEventRow, metrics: dict[int, dict[str, Any] | None]) -> AliasEvent:
    details = dict(row.details or {})
    return AliasEvent(
        id=row.id,
        time=row.time.isoformat(),
        name=row.name,
        alias=row.alias,
        kind=row.kind,
        from_version=row.from_version,
        to_version=row.to_version,
        actor=row.actor,
        reason=row.reason,
        from_metrics=details.get("from_metrics") or metrics.get(row.from_version or 0),
        to_metrics=details.get("to_metrics") or metrics.get(row.to_version or 0),
        details=details,
    )


def _metrics_of(ws: Any, name: str) -> dict[int, dict[str, Any] | None]:
    return {mv.version: mv.test_metrics for mv in _query(ws, ModelVersionRow.name == name)}


class _Moved(Exception):
    """The alias moved between reading and writing it: read it again."""


def _write(
    ws: Any,
    name: str,
    alias: str,
    kind: str,
    *,
    before: int | None,
    to_version: int | None,
    reason: str | None,
    actor: str | None,
    details: dict[str, Any] | None,
    move: bool = True,
) -> AliasEvent:
    """Move (or delete, or only record) ``name@alias`` and append its history line, in one
    transaction; a move applies only if the alias still names ``before`` (else ``_Moved``)."""
    who = actor or actor_name()
    try:
        with ws.Session.begin() as s:
            if not move:
                if before is None:  # else the version the caller judged against
                    current = s.get(AliasRow, (name, alias))
                    before = current.version if current is not None else None
            elif to_version is not None:
                target = s.scalar(
                    select(ModelVersionRow.model_id).where(
                        ModelVersionRow.name == name, ModelVersionRow.version == to_version
                    )
                )
                if target is None:
                    raise ModelError(f"model {name!r} has no version {to_version}")
                if before is None:
                    s.add(AliasRow(name=name, alias=alias, model_id=target, version=to_version))
                    s.flush()
                elif not _changed(
                    s,
                    update(AliasRow).values(
                        model_id=target, version=to_version, updated_at=utcnow()
                    ),
                    name,
                    alias,
                    before,
                ):
                    raise _Moved
            elif before is None or not _changed(s, delete(AliasRow), name, alias, before):
                raise _Moved
            row = AliasEventRow(
                name=name,
                alias=alias,
                kind=kind,
                from_version=before,
                to_version=to_version,
                actor=who,
                reason=reason,
                details=dict(details or {}),
            )
            s.add(row)
            s.flush()
            s.refresh(row)
    except IntegrityError:  # another process created the alias first
        raise _Moved from None
    event = _event(row, _metrics_of(ws, name))
    audit_event(
        ws,
        f"alias.{kind}",
        name=name,
        alias=alias,
        from_version=before,
        to_version=to_version,
        reason=reason,
        by=who,
    )
    return event


def _changed(s: Any, stmt: Any, name: str, alias: str, before: int) -> bool:
    """Compare-and-set: apply ``stmt`` only to the alias row still at ``before``."""
    where = (AliasRow.name == name, AliasRow.alias == alias, AliasRow.version == before)
    return s.execute(stmt.where(*where)).rowcount == 1


def _move(
    ws: Any,
    name: str,
    alias: str,
    kind: str,
    plan: Callable[[int | None], int | None],
    *,
    reason: str | None,
    actor: str | None,
    details: dict[str, Any] | None = None,
    expect_version: int | str | None = None,
) -> AliasEvent:
    """Read where the alias is, let ``plan(before)`` choose (or refuse) the move, write it;
    again when another process moved the alias in between. ``expect_version`` (a version, or
    ``ABSENT``): refuse (ModelError) unless the alias names exactly that now."""
    for _ in range(_RETRIES):
        now = alias_target(ws, name, alias)
        before = None if now is None else now[1]
        _check_expected(name, alias, before, expect_version)
        to_version = plan(before)
        try:
            return _write(
                ws,
                name,
                alias,
                kind,
                before=before,
                to_version=to_version,
                reason=reason,
                actor=actor,
                details=details,
            )
        except _Moved:
            time.sleep(random.uniform(0.005, 0.05))
    raise ModelError(f"{name}@{alias} kept moving while being changed: try again")


class AliasMoved(ModelError):
    """The alias no longer names the version the caller judged against."""

    def __init__(self, name: str, alias: str, expected: int | None, actual: int | None):
        self.expected, self.actual = expected, actual
        show = lambda v: "no version" if v is None else f"version {v}"  # noqa: E731
        super().__init__(
            f"{name}@{alias} names {show(actual)}, not the expected {show(expected)}: "
            "it moved in the meantime"
        )


def _check_expected(
    name: str, alias: str, before: int | None, expect_version: int | str | None
) -> None:
    if expect_version is None:
        return
    expected = None if expect_version == ABSENT else expect_version
    if before != expected:
        raise AliasMoved(name, alias, expected if isinstance(expected, int) else None, before)


def set_alias(
    ws: Any,
    name: str,
    version: int,
    alias: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    kind: str = "set",
    details: dict[str, Any] | None = None,
    expect_version: int | str | None = None,
) -> AliasEvent:
    """Point ``alias`` at ``NAME@version`` (``kind="promote"`` for a retrain's decision);
    with ``expect_version`` (a version or ``ABSENT``) only if the alias is still there, else
    :class:`AliasMoved`."""
    check_alias(alias)
    if kind not in ("set", "promote"):
        raise ModelError(f"an alias move is 'set' or 'promote', not {kind!r}")
    _backfill(ws)
    versions = _need_name(ws, name)
    if version not in versions:
        known = ", ".join(map(str, versions))
        raise ModelError(f"model {name!r} has no version {version} (versions: {known})")

    def plan(before: int | None) -> int:
        if before == version:
            raise ModelError(f"{name}@{alias} already names version {version}")
        return version

    return _move(
        ws,
        name,
        alias,
        kind,
        plan,
        reason=reason,
        actor=actor,
        details=details,
        expect_version=expect_version,
    )


def delete_alias(
    ws: Any, name: str, alias: str, *, reason: str | None = None, actor: str | None = None
) -> AliasEvent:
    """Remove an alias (``default`` cannot be deleted, only moved); rollback restores it."""
    _backfill(ws)
    _need_name(ws, name)
    if alias == DEFAULT_ALIAS:
        raise ModelError(
            f"the {DEFAULT_ALIAS!r} alias of {name!r} cannot be deleted, only moved "
            f"(`autovision models alias set {name}@VERSION {DEFAULT_ALIAS}`)"
        )

    def plan(before: int | None) -> None:
        if before is None:
            known = ", ".join(aliases(ws, name))
            raise ModelError(f"model {name!r} has no alias {alias!r} (aliases: {known})")

    return _move(ws, name, alias, "delete", plan, reason=reason, actor=actor)


def _rollback_stack(ws: Any, name: str, alias: str) -> list[int]:
    """Replay the history: set/promote/delete push the version named before, rollback pops
    the entries equal to the version it left (skipped, see :func:`rollback`), then its own."""
    stack: list[int] = []
    with ws.Session() as s:
        for kind, before in s.execute(
            select(AliasEventRow.kind, AliasEventRow.from_version)
            .where(AliasEventRow.name == name, AliasEventRow.alias == alias)
            .order_by(AliasEventRow.id)
        ):
            if kind in MOVES and before is not None:
                stack.append(before)
            elif kind == "rollback":
                _drop_current(stack, before)
                if stack:
                    stack.pop()
    return stack


def _drop_current(stack: list[int], current: int | None) -> None:
    """Entries naming the version the alias names now would roll back to itself."""
    while stack and stack[-1] == current:
        stack.pop()


def rollback_target(ws: Any, name: str, alias: str) -> int | None:
    """The version :func:`rollback` would move ``alias`` back to now, or None when it would
    be refused (what a page shows on its rollback button before anyone presses it)."""
    _backfill(ws)
    now = alias_target(ws, name, alias)
    stack = _rollback_stack(ws, name, alias)
    _drop_current(stack, None if now is None else now[1])
    return stack[-1] if stack else None


def rollback(
    ws: Any,
    name: str,
    alias: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    expect_version: int | str | None = None,
) -> AliasEvent:
    """Move ``alias`` back to the version it named before its last move; again steps further
    back. Refused (ModelError) when the history holds nothing to go back to; with
    ``expect_version`` (a version or ``ABSENT``) only if the alias still names that, else
    :class:`AliasMoved` (a second click on a stale page does not step back twice)."""
    _backfill(ws)
    _need_name(ws, name)
    check_alias(alias)

    def plan(before: int | None) -> int:
        stack = _rollback_stack(ws, name, alias)
        _drop_current(stack, before)
        if not stack:
            raise ModelError(
                f"nothing to roll back: {name}@{alias} named no other version before "
                f"(see `autovision models history {name} {alias}`)"
            )
        return stack[-1]

    return _move(
        ws,
        name,
        alias,
        "rollback",
        plan,
        reason=reason,
        actor=actor,
        expect_version=expect_version,
    )


def record_decision(
    ws: Any,
    name: str,
    alias: str,
    *,
    kind: str = "kept",
    version: int,
    reason: str,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
    from_version: int | None = None,
) -> AliasEvent:
    """A history line without a move: ``version`` (a candidate) was not given ``alias``;
    ``from_version``: the version it was judged against (default: the alias's now)."""
    check_alias(alias)
    _backfill(ws)
    _need_name(ws, name)
    return _write(
        ws,
        name,
        alias,
        kind,
        before=from_version,
        to_version=version,
        reason=reason,
        actor=actor,
        details=details,
        move=False,
    )


def history(ws: Any, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every alias event of ``name`` (or of one alias), oldest first."""
    _backfill(ws)
    _need_name(ws, name)
    metrics = _metrics_of(ws, name)
    q = select(AliasEventRow).where(AliasEventRow.name == name)
    if alias is not None:
        q = q.where(AliasEventRow.alias == alias)
    with ws.Session() as s:
        return [_event(r, metrics) for r in s.scalars(q.order_by(AliasEventRow.id))]
