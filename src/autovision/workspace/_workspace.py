"""The :class:`Workspace` facade: datasets and models stored under one directory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from autovision.data.dataset import DatasetVersion, Item, content_hash, parse_ref
from autovision.errors import DatasetError, ModelError
from autovision.workspace import paths, settings
from autovision.workspace.blobs import BlobStore

if TYPE_CHECKING:
    from autovision.versions.store import ModelVersion
from autovision.workspace.db import (
    DatasetRow,
    ItemRow,
    ModelRow,
    VersionRow,
    get_engine,
    session_factory,
)


def resolve_workspace_path(path: str | os.PathLike[str] | None = None) -> Path:
    return settings.workspace_path(path)


class Workspace:
    """Everything of a user's: ``autovision.db`` (or ``AUTOVISION_DB_URL``), ``blobs/``,
    ``models/``, ``cache/`` and ``audit.log``."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        blob_url: str | None = None,
    ) -> None:
        self.root = settings.workspace_path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_url = settings.db_url(self.root, db_url)
        self.engine = get_engine(self.db_url, self.root)
        self.Session = session_factory(self.engine)
        self.blobs = BlobStore(settings.blob_url(self.root, blob_url))
        self.models_dir = self.root / "models"
        self.cache_dir = self.root / "cache"
        self.audit_log_path = self.root / "audit.log"

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # ---- datasets -------------------------------------------------------------------

    def dataset_names(self) -> list[str]:
        with self.Session() as s:
            return list(s.scalars(select(DatasetRow.name).order_by(DatasetRow.name)))

    def list_datasets(self) -> list[dict[str, Any]]:
        """One summary per dataset (its latest version)."""
        out = []
        with self.Session() as s:
            for ds in s.scalars(select(DatasetRow).order_by(DatasetRow.name)):
                latest = s.scalar(
                    select(VersionRow)
                    .where(VersionRow.dataset_id == ds.id)
                    .order_by(VersionRow.version.desc())
                    .limit(1)
                )
                if latest is None:
                    continue
                n = s.scalar(select(func.count()).where(ItemRow.version_id == latest.id))
                out.append(
                    {
                        "dataset": ds.name,
                        "latest_version": latest.version,
                        "images": int(n or 0),
                        "multi_label": latest.multi_label,
                        "created_at": latest.created_at.isoformat(),
                    }
                )
        return out

    def versions(self, name: str) -> list[int]:
        with self.Session() as s:
            ds = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if ds is None:
                raise DatasetError(f"no dataset named {name!r} in {self.root}")
            return list(
                s.scalars(
                    select(VersionRow.version)
                    .where(VersionRow.dataset_id == ds.id)
                    .order_by(VersionRow.version)
                )
            )

    def dataset(self, ref: str) -> DatasetVersion:
        """Load ``NAME`` (latest version) or ``NAME@N``."""
        name, version = parse_ref(ref)
        with self.Session() as s:
            ds = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if ds is None:
                known = ", ".join(self.dataset_names()) or "none"
                raise DatasetError(f"no dataset named {name!r} (datasets: {known})")
            q = select(VersionRow).where(VersionRow.dataset_id == ds.id)
            if version is None:
                q = q.order_by(VersionRow.version.desc()).limit(1)
            else:
                q = q.where(VersionRow.version == version)
            row = s.scalar(q)
            if row is None:
                raise DatasetError(f"dataset {name!r} has no version {version}")
            items = tuple(
                Item(
                    id=r.item_id,
                    sha256=r.sha256,
                    source=r.source,
                    labels=tuple(r.labels or ()),
                    split=r.split,
                    width=r.width,
                    height=r.height,
                    format=r.format,
                    phash=r.phash,
                    metadata=dict(r.meta or {}),
                    stats=dict(r.stats or {}),
                )
                for r in s.scalars(
                    select(ItemRow).where(ItemRow.version_id == row.id).order_by(ItemRow.item_id)
                )
            )
            return DatasetVersion(
                name=name,
                version=row.version,
                multi_label=row.multi_label,
                items=items,
                created_at=row.created_at,
                source=row.source,
                note=row.note,
                parent_version=row.parent_version,
                params=dict(row.params or {}),
                problems=tuple(row.problems or ()),
            )

    def reserve_item_ids(self, name: str, count: int) -> int:
        """Reserve ``count`` new item ids for a dataset; returns the first one."""
        with self.Session.begin() as s:
            ds = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if ds is None:
                ds = DatasetRow(name=name, next_item_id=1)
                s.add(ds)
                s.flush()
            first = ds.next_item_id
            ds.next_item_id = first + count
            return first

    def create_version(
        self,
        name: str,
        items: Sequence[Item],
        *,
        multi_label: bool,
        source: str = "",
        note: str = "",
        parent_version: int | None = None,
        params: dict[str, Any] | None = None,
        problems: Sequence[dict[str, Any]] = (),
    ) -> DatasetVersion:
        """Store a new immutable version (all rows in one transaction)."""
        with self.Session.begin() as s:
            ds = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if ds is None:
                ds = DatasetRow(name=name, next_item_id=max((i.id for i in items), default=0) + 1)
                s.add(ds)
                s.flush()
            last = s.scalar(
                select(func.max(VersionRow.version)).where(VersionRow.dataset_id == ds.id)
            )
            row = VersionRow(
                dataset_id=ds.id,
                version=(last or 0) + 1,
                parent_version=parent_version,
                multi_label=multi_label,
                source=source,
                note=note,
                content_hash=content_hash(items),
                params=params or {},
                problems=list(problems),
            )
            s.add(row)
            s.flush()
            s.bulk_insert_mappings(
                ItemRow,
                [
                    {
                        "version_id": row.id,
                        "item_id": it.id,
                        "sha256": it.sha256,
                        "source": it.source,
                        "labels": list(it.labels),
                        "split": it.split,
                        "meta": dict(it.metadata),
                        "width": it.width,
                        "height": it.height,
                        "format": it.format,
                        "phash": it.phash,
                        "stats": dict(it.stats),
                    }
                    for it in items
                ],
            )
            version = row.version
        return self.dataset(f"{name}@{version}")

    def image_bytes(self, item: Item) -> bytes:
        return self.blobs.get(item.sha256)

    def load_image(self, item: Item):  # -> PIL.Image.Image
        """Decode an item's stored bytes to RGB."""
        from autovision.data.decode import load_rgb

        return load_rgb(self.image_bytes(item))

    # ---- models ---------------------------------------------------------------------

    def register_model(
        self,
        model_id: str,
        *,
        dataset: str,
        dataset_version: int,
        task: str,
        path: Path,
        score: float | None = None,
        info: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> ModelVersion:
        """Record a model package and make it the next version of ``name`` (default: the
        dataset's name; see :mod:`autovision.versions`)."""
        from autovision.versions.store import register_version

        row = ModelRow(
            id=model_id,
            dataset=dataset,
            dataset_version=dataset_version,
            task=task,
            path=paths.to_stored(self.root, path),
            score=score,
            info=info or {},
        )
        version = register_version(self, row, name or dataset)
        from autovision.workspace import packages

        packages.publish(self, model_id, path)  # a remote blob store holds the package too
        return version

    def update_model_info(self, model_id: str, **info: Any) -> None:
        """Merge keys into a model's ``info`` (e.g. ``test_metrics`` after evaluation)."""
        with self.Session.begin() as s:
            row = s.get(ModelRow, model_id)
            if row is None:
                raise ModelError(f"no model {model_id!r}")
            row.info = {**(row.info or {}), **info}

    def list_models(self) -> list[dict[str, Any]]:
        """Every model, oldest first, each with its ``name``, ``version`` and ``aliases``."""
        from autovision.versions.store import list_versions

        numbered = {mv.id: mv.info for mv in list_versions(self)}
        with self.Session() as s:
            rows = s.scalars(select(ModelRow).order_by(ModelRow.created_at))
            return [numbered.get(r.id) or _model_dict(r, self.root) for r in rows]

    def model(self, ref: str) -> dict[str, Any]:
        """A model by id, ``NAME@N``, ``NAME@ALIAS`` or ``NAME`` (its ``default`` alias);
        the dict holds ``model`` (the id), ``name``, ``version`` and ``aliases``."""
        from autovision.versions.store import resolve

        info = dict(resolve(self, ref).info)
        info["path"] = str(self.package_path(info["model"], info["path"]))
        return info

    def model_path(self, ref: str) -> Path:
        """The package folder of a model on this machine (fetched from a remote blob store
        into ``cache/packages`` when the workspace's own copy is not here)."""
        return Path(self.model(ref)["path"])

    def package_path(self, model_id: str, stored: str | os.PathLike[str]) -> Path:
        """``stored`` (a model's folder under ``models/``) or its fetched copy."""
        from autovision.workspace import packages

        return packages.local_package(self, model_id, stored)


def _model_dict(r: ModelRow, root: Path) -> dict[str, Any]:
    """A model row for callers: ``path`` resolved against the workspace root."""
    return {
        "model": r.id,
        "dataset": r.dataset,
        "dataset_version": r.dataset_version,
        "task": r.task,
        "created_at": r.created_at.isoformat(),
        "status": r.status,
        "score": r.score,
        "path": str(paths.resolve(root, r.path)),
        **(r.info or {}),
    }
