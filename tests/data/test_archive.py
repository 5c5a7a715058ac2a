"""Zip and tar imports: hostile entries refused one by one, bombs refused, temp folder removed."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovision.data.archive import ArchiveLimits, extract_archive, is_archive
from autovision.data.importer import ImportFailed, import_dataset
from autovision.errors import DatasetError


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def good_entries() -> dict[str, bytes]:
    return {f"pets/{'cat' if i % 2 else 'dog'}/{i}.png": png(i) for i in range(6)}


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(path: Path, entries: dict[str, bytes], special: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return path


def _tarinfo(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def tmp_left(workspace) -> list[Path]:
    tmp = Path(workspace.root) / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


def test_is_archive() -> None:
    assert all(is_archive(f"a{s}") for s in (".zip", ".tar", ".tar.gz", ".TGZ"))
    assert not is_archive("a.csv") and not is_archive("folder")


def test_zip_of_class_folders(workspace, tmp_path: Path) -> None:
    src = make_zip(tmp_path / "data.zip", good_entries() | {"__MACOSX/pets/._0.png": b"x"})
    result = import_dataset(workspace, "pets", src)
    assert result.problems == []
    assert result.version.label_counts() == {"cat": 3, "dog": 3}
    assert all(it.source.startswith(f"{src}:") for it in result.version.items)
    assert tmp_left(workspace) == []


def test_hostile_zip_entries_are_refused_and_the_rest_imported(workspace, tmp_path: Path) -> None:
    entries = good_entries() | {
        "../../evil.png": png(10),
        "/etc/evil.png": png(11),
        "pets/cat/..\\..\\evil2.png": png(12),
    }
    src = make_zip(tmp_path / "data.zip", entries, links={"pets/cat/link.png": "/etc/hostname"})
    result = import_dataset(workspace, "pets", src)
    got = sorted((p["source"].split(":", 1)[1], p["reason"]) for p in result.problems)
    assert got == [
        ("../../evil.png", "path_not_allowed"),
        ("/etc/evil.png", "path_not_allowed"),
        ("pets/cat/..\\..\\evil2.png", "path_not_allowed"),
        ("pets/cat/link.png", "path_not_allowed"),
    ]
    assert result.to_dict()["images"] == 6
    assert not (tmp_path / "evil.png").exists() and not Path("/etc/evil.png").exists()
    assert tmp_left(workspace) == []
    with pytest.raises(ImportFailed, match="strict"):
        import_dataset(workspace, "strict", src, strict=True)
    assert tmp_left(workspace) == []


def test_hostile_tar_entries(workspace, tmp_path: Path) -> None:
    special = [
        _tarinfo("pets/cat/sym.png", tarfile.SYMTYPE, "/etc/hostname"),
        _tarinfo("pets/cat/hard.png", tarfile.LNKTYPE, "/etc/hostname"),
        _tarinfo("pets/cat/dev.png", tarfile.CHRTYPE),
        _tarinfo("pets/cat/fifo.png", tarfile.FIFOTYPE),
    ]
    entries = good_entries() | {"../evil.png": png(10), "/abs.png": png(11)}
    src = make_tar(tmp_path / "data.tar.gz", entries, special)
    result = import_dataset(workspace, "pets", src)
    got = sorted((p["source"].split(":", 1)[1], p["reason"]) for p in result.problems)
    assert got == [
        ("../evil.png", "path_not_allowed"),
        ("/abs.png", "path_not_allowed"),
        ("pets/cat/dev.png", "not_a_regular_file"),
        ("pets/cat/fifo.png", "not_a_regular_file"),
        ("pets/cat/hard.png", "path_not_allowed"),
        ("pets/cat/sym.png", "path_not_allowed"),
    ]
    assert result.to_dict()["images"] == 6 and not (tmp_path / "evil.png").exists()
    assert tmp_left(workspace) == []


def test_csv_inside_an_archive_stays_inside(workspace, tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(png(20))
    entries = {
        "imgs/a.png": png(1),
        "imgs/b.png": png(2),
        "index.csv": f"imgs/a.png,cat\nimgs/b.png,dog\n../outside.png,cat\n"
        f"{tmp_path / 'outside.png'},cat\n".encode(),
    }
    src = make_zip(tmp_path / "data.zip", entries)
    result = import_dataset(workspace, "csvzip", src)
    assert [(p["line"], p["reason"]) for p in result.problems] == [
        (3, "path_not_allowed"),
        (4, "path_not_allowed"),
    ]
    assert "import-" not in result.problems[0]["message"]  # the temp folder is not shown
    assert sorted(it.source for it in result.version.items) == ["imgs/a.png", "imgs/b.png"]


def test_zip_bomb_refused(workspace, tmp_path: Path) -> None:
    """50 MB of zeros compress to ~50 KB: the archive is over 100:1 and refused."""
    src = make_zip(tmp_path / "bomb.zip", good_entries() | {"pets/cat/z.png": b"\0" * 50_000_000})
    assert src.stat().st_size < 200_000
    with pytest.raises(DatasetError, match="zip bomb"):
        import_dataset(workspace, "bomb", src)
    assert tmp_left(workspace) == []


def test_zip_bomb_entry_refused_the_rest_imported(workspace, tmp_path: Path) -> None:
    """One entry over 100:1 in an archive that is not: that entry is a problem."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (450, 450, 3), dtype=np.uint8)).save(buf, "PNG")
    entries = good_entries() | {"pets/cat/noise.png": buf.getvalue()}
    entries["pets/cat/zeros.png"] = b"\0" * 5_000_000
    src = make_zip(tmp_path / "mixed.zip", entries)
    result = import_dataset(workspace, "mixed", src)
    assert [(p["source"], p["reason"]) for p in result.problems] == [
        (f"{src}:pets/cat/zeros.png", "file_too_large")
    ]
    assert "100 times" in result.problems[0]["message"]
    assert result.to_dict()["images"] == 7


def test_lying_headers_are_checked_while_extracting(tmp_path: Path) -> None:
    """A declared size that is small does not make the real data small."""
    src = make_zip(tmp_path / "a.zip", {"big.bin": b"\0" * 3_000_000, "ok.bin": b"ok"})
    raw = bytearray(src.read_bytes())
    # edit both headers' uncompressed size of big.bin to 1 byte
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = raw.find(sig)
        raw[i + off : i + off + 4] = (1).to_bytes(4, "little")
    src.write_bytes(bytes(raw))
    out = tmp_path / "out"
    out.mkdir()
    problems = extract_archive(str(src), out, ArchiveLimits(max_ratio=1e9))
    assert (out / "ok.bin").read_bytes() == b"ok"
    big = out / "big.bin"
    assert not big.exists() or big.stat().st_size <= 1
    assert all(p.reason in ("unreadable", "file_too_large") for p in problems)


def test_total_size_and_entry_count_limits(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "a.zip", good_entries())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DatasetError, match="entries"):
        extract_archive(str(src), out, ArchiveLimits(max_entries=3))
    with pytest.raises(DatasetError, match="bytes"):
        extract_archive(str(src), out, ArchiveLimits(max_total_bytes=1000))
    tar = make_tar(tmp_path / "a.tgz", good_entries())
    with pytest.raises(DatasetError, match="bytes"):
        extract_archive(str(tar), tmp_path / "out", ArchiveLimits(max_total_bytes=1000))


def test_tar_bomb_refused(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "bomb.tar.gz", {"zeros.bin": b"\0" * 50_000_000})
    assert src.stat().st_size < 200_000
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DatasetError, match="zip bomb"):
        extract_archive(str(src), out)
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) == 0
