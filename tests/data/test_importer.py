"""Import: every problem reason, strict mode, not-a-dataset sources, splits and the blob store."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovision.data import importer
from autovision.data.importer import ImportFailed, import_dataset
from autovision.data.problems import REASONS
from autovision.errors import DatasetError

ML = "aiplatform.googleapis.com/ml_use"


def noise_image(seed: int, size: int = 16) -> Image.Image:
    """Random pixels: every seed is a distinct image (no near-duplicates by accident)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def save(path: Path, seed: int, fmt: str = "PNG", size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_image(seed, size).save(path, format=fmt)
    return path


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header for a huge 1-bit image with a few hundred bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + width // 8) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    """A CSV whose rows hit every problem reason, next to three good rows."""
    d = tmp_path / "csvsrc"
    save(d / "good1.png", 1)
    save(d / "good2.jpg", 2, "JPEG")
    save(d / "sub" / "good3.webp", 3, "WEBP")
    (d / "empty.png").write_bytes(b"")
    full = (d / "good1.png").read_bytes()
    (d / "truncated.png").write_bytes(full[: len(full) // 2])
    (d / "text.png").write_text("I am not an image\n")
    (d / "bomb.png").write_bytes(png_bomb())
    (tmp_path / "outside.png").write_bytes(full)
    os.symlink(tmp_path / "outside.png", d / "link.png")
    os.mkfifo(d / "fifo.png")
    with open(d / "huge.png", "wb") as fh:  # sparse: 31 MB on paper, nothing on disk
        fh.truncate(31_000_000)
    (d / "data.csv").write_text(
        "TRAIN,good1.png,cat\n"  # 1
        "VALIDATION,missing.png,cat\n"  # 2 missing_file
        "TEST,empty.png,cat\n"  # 3 empty_file
        "truncated.png,cat\n"  # 4 unreadable
        "text.png,dog\n"  # 5 unsupported_format
        "bomb.png,dog\n"  # 6 too_many_pixels
        "../outside.png,dog\n"  # 7 path_not_allowed (..)
        "link.png,dog\n"  # 8 path_not_allowed (link)
        'TRAIN,"unclosed.png,dog\n'  # 9 bad_row
        "good2.jpg,   \n"  # 10 bad_label (empty)
        "good2.jpg,dog\n"  # 11
        "TEST,sub/good3.webp,dog,meta:camera=c1\n"  # 12
        "http://127.0.0.1:9/x.png,dog\n"  # 13 url_not_allowed
        "fifo.png,dog\n"  # 14 not_a_regular_file
        "huge.png,dog\n"  # 15 file_too_large
    )
    return d / "data.csv"


def test_every_problem_reason_is_reported(workspace, bad_csv: Path) -> None:
    result = import_dataset(workspace, "mixed", bad_csv)
    out = result.to_dict()
    keys = ["dataset", "version", "images", "labels", "splits", "problems", "checks_summary"]
    assert list(out) == keys
    assert out["dataset"] == "mixed" and out["version"] == 1 and out["images"] == 3
    assert out["labels"] == {"cat": 1, "dog": 2}
    assert sum(out["splits"].values()) == 3 and out["splits"]["test"] == 1
    got = [(p["line"], p["reason"]) for p in out["problems"]]
    assert got == [
        (2, "missing_file"),
        (3, "empty_file"),
        (4, "unreadable"),
        (5, "unsupported_format"),
        (6, "too_many_pixels"),
        (7, "path_not_allowed"),
        (8, "path_not_allowed"),
        (9, "bad_row"),
        (10, "bad_label"),
        (13, "url_not_allowed"),
        (14, "not_a_regular_file"),
        (15, "file_too_large"),
    ]
    assert {p["reason"] for p in out["problems"]} == set(REASONS)
    for p in out["problems"]:
        assert set(p) == {"source", "line", "reason", "message"}
        assert p["message"].startswith(f"line {p['line']}:")
    assert out["problems"][0]["source"] == "missing.png"
    assert "20000x20000" in out["problems"][4]["message"]
    json.dumps(out)
    ds = workspace.dataset("mixed")
    assert ds.problems == tuple(out["problems"])
    webp = next(it for it in ds.items if it.source == "sub/good3.webp")
    assert (webp.format, webp.split, webp.metadata) == ("WEBP", "test", {"camera": "c1"})


def test_strict_mode_makes_no_version(workspace, bad_csv: Path) -> None:
    with pytest.raises(ImportFailed, match="strict import refused") as info:
        import_dataset(workspace, "mixed", bad_csv, strict=True)
    assert len(info.value.problems) == 12
    assert "mixed" not in [d["dataset"] for d in workspace.list_datasets()]
    with pytest.raises(DatasetError):
        workspace.dataset("mixed")


def test_strict_mode_with_a_clean_source(workspace, tmp_path: Path) -> None:
    for i in range(6):
        save(tmp_path / "src" / ("a" if i % 2 else "b") / f"{i}.png", i)
    result = import_dataset(workspace, "clean", tmp_path / "src", strict=True)
    assert result.to_dict()["images"] == 6 and result.problems == []


def test_lower_pixel_limit(workspace, tmp_path: Path) -> None:
    save(tmp_path / "src" / "a" / "big.png", 0, size=64)
    save(tmp_path / "src" / "a" / "small.png", 1, size=16)
    result = import_dataset(workspace, "px", tmp_path / "src", max_pixels=1000)
    assert [p["reason"] for p in result.problems] == ["too_many_pixels"]
    assert result.to_dict()["images"] == 1


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "binary", "empty-csv"])
def test_not_a_dataset(workspace, tmp_path: Path, kind: str, image_bytes) -> None:
    source = tmp_path / "source"
    if kind == "empty-folder":
        (source / "cat").mkdir(parents=True)
    elif kind == "binary":
        source = tmp_path / "image.png"
        source.write_bytes(image_bytes())
    elif kind == "empty-csv":
        source = tmp_path / "d.csv"
        source.write_text("\n")
    with pytest.raises(DatasetError, match=str(source.name)):
        import_dataset(workspace, "x", source)
    assert workspace.list_datasets() == []


def test_nothing_good_is_an_error(workspace, tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("missing.png,cat\n")
    with pytest.raises(ImportFailed, match="nothing imported") as info:
        import_dataset(workspace, "x", tmp_path / "d.csv")
    assert [p["reason"] for p in info.value.problems] == ["missing_file"]


def test_invalid_dataset_name(workspace, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="invalid dataset name"):
        import_dataset(workspace, "a@b", tmp_path)


def test_folder_import_copies_into_the_blob_store(workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(12):
        save(src / ("cat" if i < 6 else "dog") / f"{i}.png", i)
    save(src / "unlabeled.png", 99)
    shutil.copy(src / "cat" / "0.png", src / "dog" / "copy-of-0.png")
    progress: list[tuple[int, int]] = []
    result = import_dataset(workspace, "pets", src, progress=lambda d, t: progress.append((d, t)))
    ds = result.version
    assert progress[0] == (0, 14) and progress[-1] == (14, 14)
    assert len(ds.items) == 14 and ds.label_counts() == {"cat": 6, "dog": 7}
    assert [it.id for it in ds.items] == list(range(1, 15))
    assert not ds.multi_label
    assert sum(1 for it in ds.items if not it.labels) == 1
    # duplicate files are separate items, kept in one split
    dup = [it for it in ds.items if Path(it.source).name in ("0.png", "copy-of-0.png")]
    assert len(dup) == 2 and dup[0].sha256 == dup[1].sha256 and dup[0].split == dup[1].split
    it = ds.items[0]
    assert (it.width, it.height, it.format) == (16, 16, "PNG")
    assert it.stats["width"] == 16 and it.stats["height"] == 16
    shutil.rmtree(src)
    for it in ds.items:
        assert workspace.load_image(it).size == (16, 16)
    assert ds.params["format"] == "folder" and ds.params["seed"] == 0


def test_jpeg_keeps_original_size_with_draft_decoding(workspace, tmp_path: Path) -> None:
    save(tmp_path / "src" / "a" / "photo.jpg", 0, "JPEG", size=640)
    ds = import_dataset(workspace, "j", tmp_path / "src").version
    assert (ds.items[0].width, ds.items[0].height) == (640, 640)
    assert workspace.load_image(ds.items[0]).size == (640, 640)


def test_csv_multi_label_unlabeled_and_ml_use(workspace, tmp_path: Path) -> None:
    d = tmp_path / "src"
    rows = []
    for i in range(20):
        save(d / f"{i}.png", i)
        labels = ["cat", "dog"][: 1 + i % 2] if i < 16 else []
        use = {0: "TRAIN,", 1: "test,", 2: "Validation,"}.get(i, "UNASSIGNED," if i == 3 else "")
        rows.append(use + ",".join([f"{i}.png", *labels]))
    (d / "d.csv").write_text("\n".join(rows) + "\n")
    ds = import_dataset(workspace, "ml", d / "d.csv").version
    assert ds.multi_label
    assert ds.label_counts() == {"cat": 16, "dog": 8}
    by_source = {it.source: it for it in ds.items}
    assert [by_source[f"{i}.png"].split for i in range(3)] == ["train", "test", "validation"]
    assert by_source["1.png"].labels == ("cat", "dog")
    assert by_source["17.png"].labels == ()
    assert sum(ds.split_counts().values()) == 20


def test_single_label_forced_rejects_several_labels(workspace, tmp_path: Path) -> None:
    d = tmp_path / "src"
    save(d / "a.png", 0)
    save(d / "b.png", 1)
    (d / "d.csv").write_text("a.png,cat,dog\nb.png,cat\n")
    result = import_dataset(workspace, "s", d / "d.csv", multi_label=False)
    assert [(p["line"], p["reason"]) for p in result.problems] == [(1, "bad_label")]
    assert not result.version.multi_label and len(result.version.items) == 1


def test_jsonl_import(workspace, tmp_path: Path) -> None:
    d = tmp_path / "src"
    lines = []
    for i in range(10):
        save(d / "img" / f"{i}.png", i)
        row = {
            "imageGcsUri": f"img/{i}.png" if i else f"file://{d}/img/{i}.png",
            "classificationAnnotations": [{"displayName": "a"}],
            "metadata": {"idx": i},
        }
        if i < 3:
            row["dataItemResourceLabels"] = {ML: "test"}
        lines.append(json.dumps(row))
    (d / "d.jsonl").write_text("\n".join(lines) + "\n")
    ds = import_dataset(workspace, "vj", d / "d.jsonl").version
    assert ds.multi_label  # classificationAnnotations means multi-label
    assert Counter(it.split for it in ds.items[:3]) == {"test": 3}
    assert ds.items[5].metadata == {"idx": "5"}


def test_fsspec_url_source(workspace, tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    buf = io.BytesIO()
    noise_image(5).save(buf, format="PNG")
    fs.pipe("/bucket/imgs/a.png", buf.getvalue())
    fs.pipe("/bucket/d.csv", b"imgs/a.png,cat\nimgs/nope.png,cat\n")
    result = import_dataset(workspace, "remote", "memory://bucket/d.csv")
    assert result.to_dict()["images"] == 1
    assert [p["reason"] for p in result.problems] == ["missing_file"]
    assert result.version.items[0].source == "imgs/a.png"


def test_same_seed_same_splits_and_other_fractions(workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(40):
        save(src / ("a" if i % 2 else "b") / f"{i}.png", i)
    one = import_dataset(workspace, "s1", src, seed=7).version
    two = import_dataset(workspace, "s2", src, seed=7).version
    assert [it.split for it in one.items] == [it.split for it in two.items]
    half = import_dataset(workspace, "s3", src, split="50/50/0").version
    assert half.split_counts() == {"train": 20, "validation": 20, "test": 0}


def test_process_pool_path(workspace, tmp_path: Path, monkeypatch, bad_csv: Path) -> None:
    monkeypatch.setattr(importer, "SERIAL_BELOW", 0)
    pooled = import_dataset(workspace, "pool", bad_csv, workers=2).to_dict()
    serial = import_dataset(workspace, "serial", bad_csv, workers=1).to_dict()
    for key in ("images", "labels", "splits", "problems"):
        assert pooled[key] == serial[key]


def _by_sha(ds) -> dict[str, object]:
    return {it.sha256: it for it in ds.items}


def test_a_grown_dataset_keeps_ids_and_splits_of_old_images(workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(40):
        save(src / ("a" if i % 2 else "b") / f"{i}.png", i)
    one = import_dataset(workspace, "grow", src).version
    (src / "b" / "0.png").unlink()  # an image the new source no longer has
    for i in range(40, 100):
        save(src / ("a" if i % 2 else "b") / f"{i}.png", i)
    result = import_dataset(workspace, "grow", src, seed=3)
    two = result.version
    old, new = _by_sha(one), _by_sha(two)
    kept = [sha for sha in old if sha in new]
    assert len(kept) == 39
    for sha in kept:
        assert (new[sha].id, new[sha].split) == (old[sha].id, old[sha].split)
    fresh = [it for sha, it in new.items() if sha not in old]
    assert len(fresh) == 60 and min(it.id for it in fresh) > max(it.id for it in one.items)
    assert Counter(it.split for it in fresh) == Counter(train=48, validation=6, test=6)
    assert two.parent_version == 1 and "39 images kept their split of @1" in two.note
    assert result.to_dict()["previous"] == {
        "version": 1,
        "kept_splits": 39,
        "reassigned_by_ml_use": 0,
    }


def test_near_duplicates_of_old_images_join_their_split(workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(30):
        save(src / "a" / f"{i}.png", i, size=64)
    one = import_dataset(workspace, "near", src).version
    for it in one.items:
        if it.split != "train":
            Image.open(it.source).save(src / "a" / f"copy-{it.id}.jpg", quality=90)
    two = import_dataset(workspace, "near", src).version
    by_source = {Path(it.source).name: it for it in two.items}
    copies = [it for it in one.items if it.split != "train"]
    assert copies
    for it in copies:
        assert by_source[f"copy-{it.id}.jpg"].split == it.split


def test_ml_use_of_a_row_still_moves_an_old_image(workspace, tmp_path: Path) -> None:
    d = tmp_path / "src"
    for i in range(20):
        save(d / f"{i}.png", i)
    (d / "d.csv").write_text("".join(f"{i}.png,cat\n" for i in range(20)))
    one = import_dataset(workspace, "mu", d / "d.csv").version
    moved, same = [it.source for it in one.items if it.split == "train"][:2]
    ml_use = {moved: "TEST,", same: "TRAIN,"}
    rows = [f"{ml_use.get(f'{i}.png', '')}{i}.png,cat\n" for i in range(20)]
    (d / "d.csv").write_text("".join(rows))
    result = import_dataset(workspace, "mu", d / "d.csv")
    splits = {it.source: it.split for it in result.version.items}
    assert (splits[moved], splits[same]) == ("test", "train")
    assert result.to_dict()["previous"]["reassigned_by_ml_use"] == 1


def test_keep_splits_off_splits_afresh(workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(10):
        save(src / "a" / f"{i}.png", i)
    one = import_dataset(workspace, "off", src).version
    result = import_dataset(workspace, "off", src, keep_splits=False)
    assert "previous" not in result.to_dict()
    assert not {it.id for it in one.items} & {it.id for it in result.version.items}


# ---- an exported folder imports as its CSV/JSONL ------------------------------------------


def _key(ds) -> list[tuple[str, tuple[str, ...], str, tuple[tuple[str, str], ...]]]:
    """What a round trip keeps: content, labels, split and metadata of every image."""
    return sorted(
        (it.sha256, it.labels, it.split, tuple(sorted(it.metadata.items()))) for it in ds.items
    )


@pytest.fixture
def exportable(workspace, tmp_path: Path):
    """A CSV import with every split, metadata and an unlabeled image: what an export keeps."""
    d = tmp_path / "orig"
    rows = []
    for i in range(15):
        save(d / f"{i}.png", i)
        use = ("TRAIN", "VALIDATION", "TEST")[i % 3]
        label = "" if i == 14 else ("cat" if i % 2 else "dog")
        rows.append(f"{use},{i}.png,{label},meta:n={i}")
    (d / "d.csv").write_text("\n".join(rows) + "\n")
    return import_dataset(workspace, "orig", d / "d.csv", strict=True).version


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_exported_folder_imports_as_its_index_file(
    workspace, exportable, tmp_path: Path, fmt: str
) -> None:
    from autovision.data.export import export_dataset

    out = tmp_path / f"exported-{fmt}"
    export_dataset(workspace, "orig", out, format=fmt)
    # No --allow-root: the rows name images/<id>.png inside the folder of dataset.<fmt>.
    back = import_dataset(workspace, "back", out, strict=True).version
    assert _key(back) == _key(exportable)
    assert back.label_counts() == {"cat": 7, "dog": 7}  # not {"images": 15}
    assert back.params["format"] == fmt and back.source == str(out / f"dataset.{fmt}")
    again = tmp_path / f"again-{fmt}"
    export_dataset(workspace, "back", again, format=fmt)
    assert _key(import_dataset(workspace, "again", again, format=fmt).version) == _key(back)


def test_an_exported_folder_read_as_class_folders_on_request(
    workspace, exportable, tmp_path: Path
) -> None:
    from autovision.data.export import export_dataset

    out = tmp_path / "exported"
    export_dataset(workspace, "orig", out, format="csv")
    result = import_dataset(workspace, "folders", out, format="folder")
    assert result.version.label_counts() == {"images": 15}
    assert result.version.params["format"] == "folder"
    assert [(Path(p["source"]).name, p["reason"]) for p in result.problems] == [
        ("dataset.csv", "unsupported_format")
    ]


def test_an_exported_folder_stays_contained(workspace, exportable, tmp_path: Path) -> None:
    from autovision.data.export import export_dataset

    out = tmp_path / "exported"
    export_dataset(workspace, "orig", out, format="csv")
    save(tmp_path / "outside.png", 99)
    with open(out / "dataset.csv", "a") as fh:
        fh.write(f"TRAIN,../outside.png,cat\nTRAIN,{tmp_path / 'outside.png'},cat\n")
    result = import_dataset(workspace, "back", out)
    assert [p["reason"] for p in result.problems] == ["path_not_allowed"] * 2
    assert len(result.version.items) == 15
    allowed = import_dataset(workspace, "back", out, allow_roots=[tmp_path], strict=True)
    assert len(allowed.version.items) == 17


def test_folder_index_file_rules(workspace, tmp_path: Path) -> None:
    from autovision.data.readers import detect_format, resolve_source

    d = tmp_path / "both"
    save(d / "images" / "1.png", 1)
    (d / "dataset.csv").write_text("images/1.png,cat\n")
    assert detect_format(str(d)) == "csv"
    assert resolve_source(str(d)) == ("csv", str(d / "dataset.csv"))
    assert resolve_source(str(d), "folder") == ("folder", str(d))
    (d / "dataset.jsonl").write_text('{"imageGcsUri": "images/1.png"}\n')
    with pytest.raises(DatasetError, match="both dataset.csv and dataset.jsonl"):
        import_dataset(workspace, "x", d)
    assert import_dataset(workspace, "x", d, format="jsonl").version.label_counts() == {}
    assert import_dataset(workspace, "x", d, format="csv").version.label_counts() == {"cat": 1}
    plain = tmp_path / "plain"
    save(plain / "cat" / "1.png", 1)
    assert detect_format(str(plain)) == "folder"
    with pytest.raises(DatasetError, match="a folder without dataset.csv"):
        import_dataset(workspace, "y", plain, format="csv")


def test_a_zipped_export_imports_with_its_splits(workspace, exportable, tmp_path: Path) -> None:
    import zipfile

    from autovision.data.export import export_dataset

    out = tmp_path / "exported"
    export_dataset(workspace, "orig", out, format="jsonl")
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as zf:
        for f in sorted(out.rglob("*")):
            zf.write(f, f"exported/{f.relative_to(out)}")
    back = import_dataset(workspace, "zipped", tmp_path / "export.zip", strict=True).version
    assert _key(back) == _key(exportable)


# ---- the summary of the rule-based checks -------------------------------------------------


def test_import_result_counts_what_the_checks_found(workspace, tmp_path: Path) -> None:
    from autovision.data.report import checks_summary, dataset_report

    d = tmp_path / "src"
    for i in range(12):
        save(d / f"{i}.png", i)
    for name in ("dup-a", "dup-b", "conflict", "leak"):
        shutil.copy(d / "0.png" if name != "leak" else d / "1.png", d / f"{name}.png")
    (d / "d.csv").write_text(
        "".join(f"TRAIN,{i}.png,{'cat' if i % 2 else 'dog'}\n" for i in range(12))
        + "TRAIN,dup-a.png,dog\nTRAIN,dup-b.png,dog\n"  # exact copies of 0.png (dog)
        + "TRAIN,conflict.png,cat\n"  # 0.png again, labelled cat
        + "TEST,leak.png,cat\n"  # 1.png (cat, train) in test
    )
    result = import_dataset(workspace, "checked", d / "d.csv")
    counts = result.to_dict()["checks_summary"]
    assert counts == checks_summary(dataset_report(result.version))
    assert counts["conflicting_labels"] == 1 and counts["split_leakage"] == 1
    # each finding once: the copies of 0.png are the conflicting group, those of 1.png the leak
    assert counts["exact_duplicates"] == 0 and counts["near_duplicates"] >= 0
    assert counts["quality"] == {"small": 16} and counts["quality_flags"] == 16
    json.dumps(counts)


def test_shown_names_a_temporary_source_in_the_version(workspace, image_folder, tmp_path):
    """``shown``: an upload saved to a temporary path is recorded under its own name."""
    root = image_folder(labels=("cat", "dog"), per_label=2)
    out = import_dataset(workspace, "pets", root, shown="pets-upload", workers=1)
    ds = out.version
    assert ds.source == "pets-upload" and str(root) not in ds.note
    assert sorted(it.source for it in ds.items) == [
        f"pets-upload:{lab}/{i:03d}.png" for lab in ("cat", "dog") for i in range(2)
    ]
    archive = shutil.make_archive(str(tmp_path / "tmp-123"), "zip", root)
    ds = import_dataset(workspace, "pets", archive, shown="pets.zip", workers=1).version
    assert ds.source == "pets.zip"
    assert {it.source.split(":")[0] for it in ds.items} == {"pets.zip"}
    with pytest.raises(DatasetError) as info:
        import_dataset(workspace, "empty", tmp_path / "nothing.csv", shown="mine.csv")
    assert str(info.value).startswith("mine.csv: ") and str(tmp_path) not in str(info.value)
