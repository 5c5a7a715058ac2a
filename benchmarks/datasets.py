"""Real data for the benchmarks, in the forms a user would import, cached under ``.cache/bench/``.

Every function is idempotent: it returns the cached result when a ``.done`` marker exists and
prints what it does otherwise. Data comes from scikit-learn, scikit-image and Debian packages
(``apt-get download``, then ``dpkg -x``; no root needed). Nothing here is ever committed.

    .venv/bin/python benchmarks/datasets.py            # build all of them
    .venv/bin/python benchmarks/datasets.py digits     # or one
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
DEBS = CACHE / "debs"

# Official Fashion-MNIST class names, with "/" and " " made safe for folder names and for the
# cloud AutoML label rule (letters, digits, "_" and "-").
FASHION_MNIST_CLASSES = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
OPENCLIPART_CATEGORIES = (
    "animals",
    "food",
    "transportation",
    "people",
    "plants",
    "buildings",
    "tools",
)


def _say(msg: str) -> None:
    print(f"[bench-data] {msg}", flush=True)


def _cached(path: Path) -> dict | None:
    marker = path / ".done"
    if marker.is_file():
        return json.loads(marker.read_text())
    return None


def _build(path: Path, fill: Callable[[Path], dict]) -> dict:
    """Fill a temporary sibling directory, write ``.done`` with a summary, rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        summary = fill(tmp)
        (tmp / ".done").write_text(json.dumps(summary, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _deb(package: str) -> Path:
    """The ``.deb`` of a Debian package, downloaded once into ``.cache/bench/debs``."""
    DEBS.mkdir(parents=True, exist_ok=True)
    found = sorted(DEBS.glob(f"{package}_*.deb"))
    if not found:
        _say(f"apt-get download {package}")
        subprocess.run(["apt-get", "download", package], cwd=DEBS, check=True)
        found = sorted(DEBS.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} left no .deb in {DEBS}")
    return found[-1]


def _extract(package: str, into: Path) -> Path:
    deb = _deb(package)
    _say(f"dpkg -x {deb.name}")
    subprocess.run(["dpkg", "-x", str(deb), str(into)], check=True)
    return into


# ---- scikit-learn digits ------------------------------------------------------------------


def digits_folder(size: int = 32) -> Path:
    """scikit-learn's 1,797 8x8 digits as ``size`` x ``size`` grayscale PNGs, a folder per class
    (``0`` ... ``9``). Import with the folder reader; split 80/10/10 by the importer."""
    root = CACHE / f"digits-{size}"
    if (done := _cached(root)) is not None:
        _say(f"digits: cached at {root} ({done['images']} images)")
        return root

    def fill(tmp: Path) -> dict:
        from sklearn.datasets import load_digits

        _say(f"digits: writing PNGs ({size}x{size}) to {root}")
        digits = load_digits()
        counts: dict[str, int] = {}
        for i, (img, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            label = str(int(target))
            pixels = np.clip(img * (255.0 / 16.0), 0, 255).astype(np.uint8)
            im = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR)
            (tmp / label).mkdir(exist_ok=True)
            im.save(tmp / label / f"{i:04d}.png")
            counts[label] = counts.get(label, 0) + 1
        return {"images": sum(counts.values()), "size": size, "counts": counts}

    done = _build(root, fill)
    _say(f"digits: {done['images']} images in {len(done['counts'])} folders")
    return root


# ---- Fashion-MNIST ------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) -> uint8 array."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    hits = sorted(p for p in root.rglob(f"{stem}*") if p.is_file())
    if not hits:
        raise FileNotFoundError(f"no {stem}* under {root}")
    return hits[0]


def fashion_mnist_csv(validation: bool = False) -> Path:
    """Fashion-MNIST (Debian ``dataset-fashion-mnist``) as 70,000 grayscale 28x28 PNGs and a
    cloud-AutoML CSV ``ML_USE,PATH,LABEL`` (no header, paths relative to the CSV).

    ``fashion-mnist.csv``: the official 60,000 training images as TRAIN, the official 10,000
    as TEST. With ``validation=True``, ``fashion-mnist-val.csv``: the same but 6,000 of the
    training images (600 per class, fixed seed) as VALIDATION.
    """
    root = CACHE / "fashion-mnist"
    name = "fashion-mnist-val.csv" if validation else "fashion-mnist.csv"
    if (done := _cached(root)) is not None:
        _say(f"fashion-mnist: cached at {root} ({done['images']} images)")
        return root / name

    def fill(tmp: Path) -> dict:
        with tempfile.TemporaryDirectory() as ex:
            pkg = _extract("dataset-fashion-mnist", Path(ex))
            arrays = {
                stem: _read_idx(_find_idx(pkg, stem))
                for stem in (
                    "train-images-idx3-ubyte",
                    "train-labels-idx1-ubyte",
                    "t10k-images-idx3-ubyte",
                    "t10k-labels-idx1-ubyte",
                )
            }
        x_train, y_train = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
        x_test, y_test = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
        _say(f"fashion-mnist: train {x_train.shape}, test {x_test.shape}; writing PNGs")
        val_idx = _per_class_sample(y_train, per_class=600, seed=0)
        rows, rows_val = [], []
        for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
            (tmp / "images" / split).mkdir(parents=True)
            for i, (img, y) in enumerate(zip(xs, ys, strict=True)):
                rel = f"images/{split}/{i:05d}.png"
                Image.fromarray(img, mode="L").save(tmp / rel, compress_level=1)
                label = FASHION_MNIST_CLASSES[int(y)]
                use = "TRAIN" if split == "train" else "TEST"
                rows.append(f"{use},{rel},{label}")
                if split == "train" and i in val_idx:
                    use = "VALIDATION"
                rows_val.append(f"{use},{rel},{label}")
        (tmp / "fashion-mnist.csv").write_text("\n".join(rows) + "\n")
        (tmp / "fashion-mnist-val.csv").write_text("\n".join(rows_val) + "\n")
        return {
            "images": len(rows),
            "train": int(len(x_train)),
            "test": int(len(x_test)),
            "validation_in_val_csv": len(val_idx),
            "classes": list(FASHION_MNIST_CLASSES),
        }

    done = _build(root, fill)
    _say(f"fashion-mnist: {done['images']} images, CSVs in {root}")
    return root / name


def _per_class_sample(y: np.ndarray, per_class: int, seed: int) -> set[int]:
    rng = np.random.default_rng(seed)
    out: set[int] = set()
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        out.update(int(i) for i in rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return out


# ---- openclipart ----------------------------------------------------------------------------


def openclipart_folder(categories: Iterable[str] = OPENCLIPART_CATEGORIES) -> Path:
    """openclipart-png (Debian) clip art, a folder per top-level category.

    The package keeps ``/usr/share/openclipart/png/<category>/[<subfolders>/]<name>.png``, and
    many files appear in several categories through symlinks. Each category takes every PNG
    under it (subfolders included, symlinks resolved); a file reached from two or more of the
    chosen categories is ambiguous and left out, as are byte-identical copies within a
    category. Files are copied (the PNGs keep their transparency; the importer composites it
    on white).
    """
    categories = tuple(categories)
    tag = hashlib.sha256(",".join(sorted(categories)).encode()).hexdigest()[:8]
    root = CACHE / ("openclipart" if categories == OPENCLIPART_CATEGORIES else f"openclipart-{tag}")
    if (done := _cached(root)) is not None:
        _say(f"openclipart: cached at {root} {done['counts']}")
        return root

    def fill(tmp: Path) -> dict:
        with tempfile.TemporaryDirectory() as ex:
            base = _extract("openclipart-png", Path(ex)) / "usr" / "share" / "openclipart" / "png"
            available = sorted(p.name for p in base.iterdir() if p.is_dir())
            _say(f"openclipart: categories in the package: {', '.join(available)}")
            unknown = [c for c in categories if c not in available]
            if unknown:
                raise ValueError(f"unknown openclipart categories {unknown}; known: {available}")
            owners: dict[Path, dict[str, Path]] = {}  # real file -> {category: path in it}
            for cat in categories:
                for p in sorted((base / cat).rglob("*.png")):
                    if p.is_file():  # follows symlinks; drops dangling ones
                        cats = owners.setdefault(p.resolve(), {})
                        cats.setdefault(cat, p.relative_to(base / cat))
            ambiguous = sum(1 for cats in owners.values() if len(cats) > 1)
            counts: dict[str, int] = {}
            seen: set[tuple[str, str]] = set()
            for real, cats in sorted(owners.items()):
                if len(cats) > 1:
                    continue
                ((cat, rel),) = cats.items()
                data = real.read_bytes()
                key = (cat, hashlib.sha256(data).hexdigest())
                if key in seen:
                    continue
                seen.add(key)
                dest = tmp / cat / "__".join(rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                counts[cat] = counts.get(cat, 0) + 1
        return {
            "images": sum(counts.values()),
            "counts": {c: counts.get(c, 0) for c in categories},
            "ambiguous_left_out": ambiguous,
        }

    done = _build(root, fill)
    _say(
        f"openclipart: {done['images']} images {done['counts']}, "
        f"{done['ambiguous_left_out']} in several categories left out"
    )
    return root


# ---- photos as JPEG -------------------------------------------------------------------------

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "stereo_motorcycle")


def photos_jpeg(n: int = 2000, size: tuple[int, int] = (320, 240)) -> Path:
    """``n`` JPEG photos (``size``, quality 90) for batch-prediction and server load tests:
    random crops, flips and colour shifts of scikit-image's bundled photographs."""
    root = CACHE / f"photos-{n}-{size[0]}x{size[1]}"
    if (done := _cached(root)) is not None:
        _say(f"photos: cached at {root} ({done['images']} images)")
        return root

    def fill(tmp: Path) -> dict:
        import skimage.data

        _say(f"photos: writing {n} JPEGs {size[0]}x{size[1]} to {root}")
        arrays = [getattr(skimage.data, name)() for name in _PHOTOS]
        arrays = [a[0] if isinstance(a, tuple) else a for a in arrays]  # stereo: left image
        sources = [Image.fromarray(a).convert("RGB") for a in arrays]
        rng = np.random.default_rng(0)
        for i in range(n):
            src = sources[i % len(sources)]
            w, h = src.size
            scale = rng.uniform(0.4, 1.0)
            cw, ch = int(w * scale), int(h * scale)
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img = src.crop((left, top, left + cw, top + ch)).resize(size, Image.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            arr = np.asarray(img, dtype=np.float32) * rng.uniform(0.8, 1.2, size=3)
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            img.save(tmp / f"{i:05d}.jpg", quality=90)
        return {"images": n, "size": list(size), "sources": list(_PHOTOS)}

    done = _build(root, fill)
    _say(f"photos: {done['images']} JPEGs")
    return root


BUILDERS: dict[str, Callable[[], Path]] = {
    "digits": digits_folder,
    "fashion-mnist": fashion_mnist_csv,
    "openclipart": openclipart_folder,
    "photos": photos_jpeg,
}


def main(argv: list[str]) -> None:
    names = argv or list(BUILDERS)
    for name in names:
        if name not in BUILDERS:
            raise SystemExit(f"unknown data set {name!r}; known: {', '.join(BUILDERS)}")
        print(f"{name}: {BUILDERS[name]()}")


if __name__ == "__main__":
    main(sys.argv[1:])
