"""A faulty copy of a class-folder data set, with the truth of every planted fault.

    .venv/bin/python benchmarks/faults.py                     # openclipart, seed 0
    .venv/bin/python benchmarks/faults.py --seed 1 --limit 300 --out /tmp/faults

What ``benchmarks/bench_data_checks.py`` scores the data checks against. From the ``N`` images
of the source (openclipart by default: ``datasets.openclipart_folder()``, only read), seeded:

- ``label_flip``: 5% of ``N`` images keep their file but get another class's label (uniform
  over the other classes);
- ``resized_duplicate``: 3% of ``N``: a second copy of an image, composited on white, resized
  to 0.5-0.8x and re-encoded as JPEG (quality 70-90);
- ``crop`` / ``hflip``: 2% of ``N``: a second copy cropped to 70-90% of the area (PNG) or
  mirrored left to right (PNG), half each;
- ``outlier``: 1% of ``N``: a random crop of a scikit-image sample photograph (one photo per
  outlier while they last), filed under a random class.

Every planted copy carries its original's (correct) label; flipped images are never the
originals of copies, so each fault is of one kind only. Files get opaque names
(``images/00042.png``, rows shuffled) so nothing but the pixels tells a class. Splits:
originals and outliers get ML_USE from here (80/10/10 per class, and the flips and the
outliers each 80/10/10 on their own, so that every split holds some); copies have no ML_USE
and are split by the importer, which keeps a copy its perceptual hash finds with its
original and may put the others anywhere (leakage the checks should report).

Writes ``OUT/faults.csv`` (cloud AutoML layout ``[ML_USE,]PATH,LABEL``), ``OUT/images/`` and
``OUT/truth.json``: ``files`` ({file: {"kind", "original", "true_label", "label", "ml_use",
"of"}} for every row; ``kind`` ``clean`` for untouched images) and ``faults`` (one entry per
planted fault with its parameters). Images over the importer's pixel limit are left out.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402  (benchmarks/datasets.py: cached sample data)

FRACTIONS = {"label_flip": 0.05, "resized_duplicate": 0.03, "crop_or_flip": 0.02, "outlier": 0.01}
SPLIT_FRACTIONS = (("TRAIN", 0.8), ("VALIDATION", 0.1), ("TEST", 0.1))
COPY_KINDS = ("resized_duplicate", "crop", "hflip")
MAX_PIXELS = 40_000_000  # autovision.data.decode.DEFAULT_MAX_PIXELS: larger ones fail to import
MIN_COPY_SIDE = 64  # a smaller image makes a meaningless 0.5x copy
# Photographs bundled with scikit-image (no download); clip-art-like ones (logo, horse,
# colorwheel, checkerboard) are left out, and ``cat`` is ``chelsea``.
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "stereo_motorcycle",
    "retina",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
    "page",
    "text",
    "cell",
)


@dataclass
class Source:
    path: Path  # the image file
    rel: str  # "<class>/<file>" inside the source folder
    label: str


def _say(msg: str) -> None:
    print(f"[faults] {msg}", flush=True)


def _count(fraction: float, n: int) -> int:
    return int(round(fraction * n))


def _split_counts(n: int) -> list[tuple[str, int]]:
    """80/10/10 of ``n``, at least one in validation and test from 3 up."""
    val = max(1, round(0.1 * n)) if n >= 3 else 0
    test = max(1, round(0.1 * n)) if n >= 3 else 0
    return [("TRAIN", n - val - test), ("VALIDATION", val), ("TEST", test)]


def _assign_splits(keys: list[Any], rng: np.random.Generator) -> dict[Any, str]:
    order = [keys[i] for i in rng.permutation(len(keys))]
    out: dict[Any, str] = {}
    start = 0
    for split, n in _split_counts(len(order)):
        out.update({k: split for k in order[start : start + n]})
        start += n
    return out


def list_sources(folder: Path) -> list[Source]:
    """Every importable image of a class-folder data set, sorted (the order seeds rely on)."""
    out = []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(p for p in cls.iterdir() if p.is_file()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                try:
                    with Image.open(path) as im:
                        w, h = im.size
                except (OSError, Image.DecompressionBombError):
                    continue  # the importer refuses it too
            if w * h <= MAX_PIXELS:
                out.append(Source(path, f"{cls.name}/{path.name}", cls.name))
    return out


def _rgb(path: Path) -> Image.Image:
    """The image as the importer sees it: transparency composited on white."""
    with Image.open(path) as im:
        im.load()
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")


def _min_side(path: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            return min(im.size)


@functools.cache
def _photo(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    arr = arr[0] if isinstance(arr, tuple) else arr
    return Image.fromarray(np.asarray(arr)).convert("RGB")


def make_faults(
    source: Path,
    out: Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    fractions: dict[str, float] = FRACTIONS,
) -> dict[str, Any]:
    """Write the faulty copy of ``source`` into ``out`` (replaced) and return the truth."""
    rng = np.random.default_rng(seed)
    sources = list_sources(source)
    if limit is not None and limit < len(sources):
        keep = np.sort(rng.choice(len(sources), size=limit, replace=False))
        sources = [sources[i] for i in keep]
    n = len(sources)
    classes = sorted({s.label for s in sources})
    if len(classes) < 2:
        raise ValueError(f"{source}: need at least 2 class folders, found {classes}")
    n_flip = _count(fractions["label_flip"], n)
    n_dup = _count(fractions["resized_duplicate"], n)
    n_crop = _count(fractions["crop_or_flip"], n)
    n_out = _count(fractions["outlier"], n)

    order = [int(i) for i in rng.permutation(n)]
    flipped = order[:n_flip]
    copyable = [i for i in order[n_flip:] if _min_side(sources[i].path) >= MIN_COPY_SIDE]
    if len(copyable) < n_dup + n_crop:
        raise ValueError(f"{source}: too few images of >= {MIN_COPY_SIDE} px to copy")
    dup_of, crop_of = copyable[:n_dup], copyable[n_dup : n_dup + n_crop]

    given = {i: s.label for i, s in enumerate(sources)}
    for i in flipped:
        others = [c for c in classes if c != sources[i].label]
        given[i] = others[int(rng.integers(len(others)))]

    # Rows before naming: (key, kind, payload)
    rows: list[dict[str, Any]] = []
    for i, s in enumerate(sources):
        rows.append(
            {
                "key": ("src", i),
                "kind": "label_flip" if given[i] != s.label else "clean",
                "original": s.rel,
                "true_label": s.label,
                "label": given[i],
                "ext": s.path.suffix.lower() or ".png",
                "src": i,
            }
        )
    for j, i in enumerate(dup_of):
        rows.append(
            {
                "key": ("dup", j),
                "kind": "resized_duplicate",
                "original": sources[i].rel,
                "true_label": sources[i].label,
                "label": sources[i].label,
                "ext": ".jpg",
                "of_src": i,
                "scale": round(float(rng.uniform(0.5, 0.8)), 3),
                "quality": int(rng.integers(70, 91)),
            }
        )
    for j, i in enumerate(crop_of):
        kind = "crop" if j % 2 == 0 else "hflip"
        row = {
            "key": ("crop", j),
            "kind": kind,
            "original": sources[i].rel,
            "true_label": sources[i].label,
            "label": sources[i].label,
            "ext": ".png",
            "of_src": i,
        }
        if kind == "crop":
            area = float(rng.uniform(0.7, 0.9))
            row["area"] = round(area, 3)
            row["pos"] = [round(float(rng.random()), 4), round(float(rng.random()), 4)]
        rows.append(row)
    photo_order = [int(i) for i in rng.permutation(len(PHOTOS))] if n_out else []
    for j in range(n_out):
        name = PHOTOS[photo_order[j % len(PHOTOS)]]
        side = float(rng.uniform(0.5, 1.0))
        rows.append(
            {
                "key": ("out", j),
                "kind": "outlier",
                "original": f"skimage.data.{name}",
                "true_label": None,
                "label": classes[int(rng.integers(len(classes)))],
                "ext": ".jpg",
                "side": round(side, 3),
                "pos": [round(float(rng.random()), 4), round(float(rng.random()), 4)],
                "size": int(rng.integers(160, 401)),
            }
        )

    # ML_USE: the flips and the outliers 80/10/10 each, the other originals per class;
    # copies none (the importer splits them).
    ml_use: dict[tuple, str] = {}
    ml_use.update(_assign_splits([r["key"] for r in rows if r["kind"] == "label_flip"], rng))
    ml_use.update(_assign_splits([r["key"] for r in rows if r["kind"] == "outlier"], rng))
    for cls in classes:
        keys = [r["key"] for r in rows if r["kind"] == "clean" and r["label"] == cls]
        ml_use.update(_assign_splits(keys, rng))

    perm = rng.permutation(len(rows))
    width = max(5, len(str(len(rows))))
    file_of: dict[tuple, str] = {}
    for pos, idx in enumerate(perm):
        r = rows[int(idx)]
        file_of[r["key"]] = f"images/{pos:0{width}d}{r['ext']}"

    if out.exists():
        if any(out.iterdir()) and not (out / "truth.json").is_file():
            raise ValueError(f"{out}: not empty and not a faults folder; not replacing it")
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {}
    faults: list[dict[str, Any]] = []
    for r in rows:
        file = file_of[r["key"]]
        dest = out / file
        of = file_of[("src", r["of_src"])] if "of_src" in r else None
        params: dict[str, Any] = {}
        if r["kind"] in ("clean", "label_flip"):
            shutil.copyfile(sources[r["src"]].path, dest)
        elif r["kind"] == "resized_duplicate":
            img = _rgb(sources[r["of_src"]].path)
            w, h = img.size
            size = (max(1, round(w * r["scale"])), max(1, round(h * r["scale"])))
            img.resize(size, Image.BICUBIC).save(dest, format="JPEG", quality=r["quality"])
            params = {"scale": r["scale"], "quality": r["quality"], "size": list(size)}
        elif r["kind"] == "crop":
            with Image.open(sources[r["of_src"]].path) as img:
                img.load()
                w, h = img.size
                f = r["area"] ** 0.5
                cw, ch = max(1, round(w * f)), max(1, round(h * f))
                left, top = round((w - cw) * r["pos"][0]), round((h - ch) * r["pos"][1])
                box = (left, top, left + cw, top + ch)
                img.crop(box).save(dest, format="PNG")
            params = {"area": r["area"], "box": list(box)}
        elif r["kind"] == "hflip":
            with Image.open(sources[r["of_src"]].path) as img:
                img.load()
                img.transpose(Image.FLIP_LEFT_RIGHT).save(dest, format="PNG")
        else:  # outlier
            photo = _photo(r["original"].removeprefix("skimage.data."))
            w, h = photo.size
            cw, ch = max(1, round(w * r["side"])), max(1, round(h * r["side"]))
            left, top = round((w - cw) * r["pos"][0]), round((h - ch) * r["pos"][1])
            box = (left, top, left + cw, top + ch)
            crop = photo.crop(box)
            scale = r["size"] / max(crop.size)
            size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
            crop.resize(size, Image.BICUBIC).save(dest, format="JPEG", quality=90)
            params = {"box": list(box), "size": list(size)}
        entry = {
            "kind": r["kind"],
            "original": r["original"],
            "true_label": r["true_label"],
            "label": r["label"],
            "ml_use": ml_use.get(r["key"]),
            "of": of,
        }
        files[file] = entry
        if r["kind"] != "clean":
            faults.append({"file": file, **entry, **params})

    lines = []
    for pos in range(len(rows)):
        r = rows[int(perm[pos])]
        file = file_of[r["key"]]
        use = ml_use.get(r["key"])
        lines.append(f"{use},{file},{r['label']}" if use else f"{file},{r['label']}")
    (out / "faults.csv").write_text("\n".join(lines) + "\n")

    counts = {"originals": n, "images": len(rows)}
    for f in faults:
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    truth = {
        "seed": seed,
        "limit": limit,
        "source": str(source),
        "classes": classes,
        "fractions": dict(fractions),
        "counts": counts,
        "files": dict(sorted(files.items())),
        "faults": sorted(faults, key=lambda f: (f["kind"], f["file"])),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (determinism checks)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--source", type=Path, help="class-folder data set (default: openclipart)")
    ap.add_argument("--out", type=Path, help="output folder (default: .cache/bench/...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="take this many source images (quick runs)")
    args = ap.parse_args(argv)
    source = args.source or datasets.openclipart_folder()
    tag = f"seed{args.seed}" + (f"-limit{args.limit}" if args.limit else "")
    out = args.out or datasets.CACHE / f"{source.name}-faults-{tag}"
    truth = make_faults(source, out, seed=args.seed, limit=args.limit)
    _say(f"{out}: {json.dumps(truth['counts'])}")
    _say(f"digest {digest(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
