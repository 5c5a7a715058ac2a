"""Checks a dataset version before any training and turns it into arrays the search uses.

Only the ``train`` and ``validation`` splits are used; test items are never loaded (their
labels are looked at once, to refuse labels that have no training images).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovision.data.dataset import DatasetVersion, Item
from autovision.errors import TrainingError

TASKS = ("auto", "single-label", "multi-label")
SELECTION_VAL_MAX = 2000  # validation images used to rank trials in a timed search
HOLDOUT_FRACTION = 0.1
SMALL_SIDE = 64  # images at most this size (median short side) are "small"
GRAY_CHANNEL_DIFF = 0.04


@dataclass(frozen=True)
class DataProfile:
    """Facts that steer the default configurations and the search space."""

    n_train: int
    n_val: int
    n_labels: int
    median_side: int
    grayscale: bool
    imbalance: float  # largest / smallest training label count

    @property
    def small(self) -> bool:
        return self.median_side <= SMALL_SIDE

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_labels": self.n_labels,
            "median_side": self.median_side,
            "grayscale": self.grayscale,
            "small": self.small,
            "imbalance": round(self.imbalance, 3),
        }


@dataclass
class TrainData:
    """Training and validation items with their targets.

    ``y_train`` / ``y_val``: int64 label indices (single-label) or float32 indicator rows
    (multi-label). ``order``: a stratified permutation of the training indices; any prefix of
    it is a label-balanced subsample. ``val_select``: the validation indices that rank trials.
    """

    dataset: DatasetVersion
    task: str
    labels: list[str]
    train: list[Item]
    val: list[Item]
    y_train: np.ndarray
    y_val: np.ndarray
    order: np.ndarray
    val_select: np.ndarray
    profile: DataProfile
    validation_source: str = "validation"
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return self.task == "multi-label"

    @property
    def items(self) -> list[Item]:
        """Validation then training items: the order of every cached array."""
        return [*self.val, *self.train]

    def class_weights(self) -> np.ndarray:
        """Per-label weights, inverse to the training frequency (mean 1)."""
        counts = np.array([max(1, self.label_counts.get(lab, 0)) for lab in self.labels], float)
        w = counts.sum() / (len(counts) * counts)
        return (w / w.mean()).astype(np.float32)

    def sample_weights(self, y: np.ndarray) -> np.ndarray:
        """Weights for balanced sampling of the images with targets ``y`` (each image's
        rarest label)."""
        w = self.class_weights()
        if self.multi_label:
            return np.array([w[row > 0].max() if row.any() else 1.0 for row in y])
        return w[y]

    def fit_rows(
        self, n_train: int, *, refit: bool = False, cached: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows a trial fits and their targets: the first ``n_train`` training images of
        :attr:`order`, as rows of :attr:`items` (ascending), or with ``cached`` as rows of the
        cached arrays (validation, then training images in :attr:`order`); ``refit`` puts
        every validation image first (the chosen configuration retrained on both splits)."""
        take = self.order[:n_train] if cached else np.sort(self.order[:n_train])
        n_val = len(self.val)
        rows = n_val + (np.arange(len(take)) if cached else take)
        y = self.y_train[take]
        if refit:
            rows, y = np.concatenate([np.arange(n_val), rows]), np.concatenate([self.y_val, y])
        return rows, y


def resolve_task(dv: DatasetVersion, task: str) -> str:
    if task not in TASKS:
        raise TrainingError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if task == "auto":
        return "multi-label" if dv.multi_label else "single-label"
    if task == "single-label":
        multi = [it for it in dv.labeled_items if len(it.labels) > 1]
        if multi:
            it = multi[0]
            raise TrainingError(
                f"{dv.ref}: --task single-label, but {len(multi)} images have several labels "
                f"(e.g. item {it.id} {it.source}: {', '.join(it.labels)}); use --task multi-label"
            )
    return task


def _rarest(items: list[Item]) -> list[str]:
    """Each item's rarest label (its stratum)."""
    counts: Counter[str] = Counter()
    for it in items:
        counts.update(it.labels)
    return [min(it.labels, key=lambda lab: (counts[lab], lab)) for it in items]


def stratified_order(items: list[Item], rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``items`` whose every prefix keeps the label proportions."""
    strata = _rarest(items)
    sizes = Counter(strata)
    rank: Counter[str] = Counter()
    keys = np.empty(len(items))
    noise = rng.random(len(items))
    for i in rng.permutation(len(items)):
        lab = strata[i]
        keys[i] = (rank[lab] + noise[i]) / sizes[lab]
        rank[lab] += 1
    return np.argsort(keys, kind="stable")


def _holdout(train: list[Item], seed: int) -> tuple[list[Item], list[Item]]:
    """Carve a stratified validation set out of ``train`` (labels with one image stay)."""
    strata = _rarest(train)
    sizes = Counter(strata)
    want = {
        lab: int(round(HOLDOUT_FRACTION * c)) or (1 if c >= 2 else 0) for lab, c in sizes.items()
    }
    take: Counter[str] = Counter()
    keep, val = [], []
    for i in np.random.default_rng(seed + 7).permutation(len(train)):
        lab = strata[i]
        if take[lab] < want[lab]:
            take[lab] += 1
            val.append(train[i])
        else:
            keep.append(train[i])
    return sorted(keep, key=lambda i: i.id), sorted(val, key=lambda i: i.id)


def _targets(items: list[Item], labels: list[str], multi: bool) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    if multi:
        y = np.zeros((len(items), len(labels)), dtype=np.float32)
        for r, it in enumerate(items):
            for lab in it.labels:
                y[r, index[lab]] = 1.0
        return y
    return np.array([index[it.labels[0]] for it in items], dtype=np.int64)


def _profile(
    train: list[Item], val: list[Item], labels: list[str], counts: Counter[str]
) -> DataProfile:
    sides = [min(it.width, it.height) for it in train if it.width and it.height]
    median_side = int(np.median(sides)) if sides else 224
    diffs = [it.stats.get("channel_diff") for it in train if "channel_diff" in (it.stats or {})]
    gray = bool(diffs) and float(np.mean([d <= GRAY_CHANNEL_DIFF for d in diffs])) >= 0.5
    present = [counts[lab] for lab in labels]
    return DataProfile(
        n_train=len(train),
        n_val=len(val),
        n_labels=len(labels),
        median_side=median_side,
        grayscale=gray,
        imbalance=max(present) / max(1, min(present)),
    )


def prepare_data(dv: DatasetVersion, *, task: str = "auto", seed: int = 0) -> TrainData:
    """Validate ``dv`` for training; :class:`TrainingError` says what is wrong, before any work."""
    task = resolve_task(dv, task)
    multi = task == "multi-label"
    labels = dv.labels
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "none"
        raise TrainingError(
            f"{dv.ref}: training needs at least 2 labels with images; found {found}"
        )
    train = dv.split("train")
    if not train:
        raise TrainingError(f"{dv.ref}: the train split has no labeled images")
    val = dv.split("validation")
    source = "validation"
    if not val:
        train, val = _holdout(train, seed)
        source = "train-holdout"
        if not val:
            raise TrainingError(
                f"{dv.ref}: the validation split is empty and the train split is too small "
                "to hold some images out; add images or assign a validation split"
            )
    counts: Counter[str] = Counter()
    for it in train:
        counts.update(it.labels)
    missing = [lab for lab in labels if counts[lab] == 0]
    if missing:
        raise TrainingError(
            f"{dv.ref}: label(s) {', '.join(repr(m) for m in missing)} have no training images "
            "(they only occur in the validation or test split); add training images or "
            "exclude the label"
        )
    rng = np.random.default_rng(seed)
    order = stratified_order(train, rng)
    val_order = stratified_order(val, rng)
    return TrainData(
        dataset=dv,
        task=task,
        labels=labels,
        train=train,
        val=val,
        y_train=_targets(train, labels, multi),
        y_val=_targets(val, labels, multi),
        order=order,
        val_select=np.sort(val_order[:SELECTION_VAL_MAX]),
        profile=_profile(train, val, labels, counts),
        validation_source=source,
        label_counts={lab: counts[lab] for lab in labels},
    )
