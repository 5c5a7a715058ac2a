"""Train/validation/test splits: stratified, deterministic, duplicate groups kept together.

Rules, in order:

1. A split fixed by the source (ML_USE) wins. A duplicate group with a fixed member takes
   that split for its free members; when fixed members disagree they keep their own splits,
   the free members go to the most common of them, and the conflict is noted.
2. An image whose content was in the previous version of the dataset keeps its ``previous``
   split (test splits stay comparable as a dataset grows), unless its own row fixes one
   (that entry is counted in ``reassigned``). A duplicate group with no fixed member but an
   old one goes to the old member's split (the most common, when old members differ).
3. Everything else (UNASSIGNED, unmarked) is split by the fractions with iterative
   stratification (Sechidis et al., 2011), which is ordinary stratification for single-label
   data and balances every label of multi-label data. A duplicate group is one unit and goes
   to one split. Unlabeled images form their own stratum (they get a split, no training).
4. A label with at least 3 images split by the rule gets at least one of them in train
   (when the train fraction is not zero), so that every such label can be learned.

Ties are broken with a ``numpy`` generator seeded by ``seed``: same input, same splits.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from autovision.data.dataset import SPLITS
from autovision.errors import DatasetError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
MIN_FOR_TRAIN = 3
_UNLABELED = "\x00unlabeled"


@dataclass(frozen=True)
class SplitEntry:
    """An image to split: its id, labels, the split its source fixed (or ``None``) and the
    split its content had in the previous version (or ``None`` for a new image)."""

    id: int
    labels: tuple[str, ...] = ()
    fixed: str | None = None
    previous: str | None = None


@dataclass
class SplitResult:
    """The split of every id, the groups whose fixed splits disagree, and the old images
    (ids) that ML_USE moved away from their previous split."""

    splits: dict[int, str]
    conflicts: list[dict[str, object]] = field(default_factory=list)
    reassigned: list[int] = field(default_factory=list)


def parse_fractions(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """``"80/10/10"`` or ``(0.8, 0.1, 0.1)`` -> fractions that sum to 1."""
    if isinstance(spec, str):
        try:
            parts = [float(p) for p in spec.replace(",", "/").split("/")]
        except ValueError:
            raise DatasetError(f"invalid split {spec!r}: expected TRAIN/VALIDATION/TEST") from None
    else:
        parts = [float(p) for p in spec]
    if len(parts) != 3 or any(p < 0 or p != p for p in parts) or sum(parts) <= 0:
        raise DatasetError(
            f"invalid split {spec!r}: expected three non-negative numbers such as 80/10/10"
        )
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def _components(ids: Iterable[int], groups: Iterable[Iterable[int]]) -> list[list[int]]:
    parent = {i: i for i in ids}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        members = [g for g in group if g in parent]
        for other in members[1:]:
            ra, rb = find(members[0]), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = defaultdict(list)
    for i in parent:
        comps[find(i)].append(i)
    return [sorted(c) for c in comps.values()]


def assign_splits(
    entries: Sequence[SplitEntry],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    groups: Iterable[Iterable[int]] = (),
) -> SplitResult:
    """Give every entry a split (``train``, ``validation`` or ``test``); see the module rules."""
    fracs = np.array(parse_fractions(fractions), dtype=np.float64)
    by_id = {e.id: e for e in entries}
    if len(by_id) != len(entries):
        raise DatasetError("assign_splits: duplicate ids")
    for e in entries:
        for kind, value in (("split", e.fixed), ("previous split", e.previous)):
            if value is not None and value not in SPLITS:
                raise DatasetError(f"item {e.id}: unknown {kind} {value!r}")

    result = SplitResult(splits={})
    result.reassigned = sorted(
        e.id for e in entries if e.fixed is not None and e.previous not in (None, e.fixed)
    )
    free_units: list[list[int]] = []
    for unit in _components(by_id, groups):
        pinned = {i: by_id[i].fixed or by_id[i].previous for i in unit}
        pinned = {i: s for i, s in pinned.items() if s is not None}
        if not pinned:
            free_units.append(unit)
            continue
        fixed = [by_id[i].fixed for i in unit if by_id[i].fixed is not None]
        counts = Counter(fixed or pinned.values())
        top = max(SPLITS, key=lambda s: (counts.get(s, 0), -SPLITS.index(s)))
        if len(set(pinned.values())) > 1:
            result.conflicts.append(_conflict(unit, pinned, top, old=len(fixed) < len(pinned)))
        for i in unit:
            result.splits[i] = pinned.get(i, top)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(free_units)) if free_units else []
    units = [free_units[k] for k in order]
    result.splits.update(_iterative_stratification(units, by_id, fracs, rng))
    return result


def _conflict(unit: list[int], pinned: dict[int, str], top: str, *, old: bool) -> dict[str, object]:
    names = ", ".join(sorted(set(pinned.values())))
    if old:
        message = (
            f"duplicate group {unit} has members in different splits ({names}) through ML_USE "
            f"or the previous version; they keep them, free members go to {top}"
        )
    else:
        message = (
            f"duplicate group {unit} has members fixed to different splits ({names}); "
            f"the file's ML_USE wins, free members go to {top}"
        )
    return {"ids": unit, "splits": pinned, "message": message}


def _iterative_stratification(
    units: list[list[int]],
    by_id: dict[int, SplitEntry],
    fracs: np.ndarray,
    rng: np.random.Generator,
) -> dict[int, str]:
    """Sechidis-style iterative stratification over units (groups) weighted by their size."""
    n_splits = len(SPLITS)
    allowed = fracs > 0
    unit_labels: list[Counter[str]] = []
    by_label: dict[str, list[int]] = defaultdict(list)
    for u, unit in enumerate(units):
        c: Counter[str] = Counter()
        for i in unit:
            c.update(by_id[i].labels or (_UNLABELED,))
        unit_labels.append(c)
        for lab in c:
            by_label[lab].append(u)

    total = sum(len(u) for u in units)
    want_all = [float(f) * total for f in fracs]
    want: dict[str, list[float]] = {}
    remaining: dict[str, int] = {}
    for lab, us in by_label.items():
        n = sum(unit_labels[u][lab] for u in us)
        want[lab] = [float(f) * n for f in fracs]
        remaining[lab] = n
    size_of = {lab: remaining[lab] for lab in remaining}
    in_train: Counter[str] = Counter()
    assigned: list[bool] = [False] * len(units)
    noise = rng.random((len(units), n_splits)).tolist()
    candidates = [s for s in range(n_splits) if allowed[s]]
    out: dict[int, str] = {}

    def place(u: int, s: int) -> None:
        assigned[u] = True
        want_all[s] -= len(units[u])
        for lab, k in unit_labels[u].items():
            want[lab][s] -= k
            remaining[lab] -= k
            if s == 0:
                in_train[lab] += k
        for i in units[u]:
            out[i] = SPLITS[s]

    while True:
        open_labels = [lab for lab, n in remaining.items() if n > 0]
        if not open_labels:
            break
        fewest = min(remaining[lab] for lab in open_labels)
        ties = sorted(lab for lab in open_labels if remaining[lab] == fewest)
        lab = ties[int(rng.integers(len(ties)))] if len(ties) > 1 else ties[0]
        need_train = (
            lab != _UNLABELED
            and bool(allowed[0])
            and in_train[lab] == 0
            and size_of[lab] >= MIN_FOR_TRAIN
        )
        wl = want[lab]
        for u in by_label[lab]:
            if assigned[u]:
                continue
            if need_train:
                place(u, 0)
                need_train = False
                continue
            nz = noise[u]
            # deficits compared to 1e-6 of an image so that float noise never breaks a tie
            best = max(
                candidates, key=lambda s: (round(wl[s] * 1e6), round(want_all[s] * 1e6), nz[s])
            )
            place(u, best)
    return out
