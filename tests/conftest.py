"""Shared fixtures: a fresh workspace and tiny images the tests generate themselves; the
workspace database on SQLite or on a throwaway PostgreSQL server (``db_url``)."""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test touches ~/.autovision or the user's settings."""
    for var in (
        "AUTOVISION_WORKSPACE",
        "AUTOVISION_DB_URL",
        "AUTOVISION_BLOB_URL",
        "AUTOVISION_ENCRYPTION_KEY",
        "AUTOVISION_ENCRYPTION_KEY_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _load_postgres():
    """``tests/_postgres.py`` by path (the venv may hold another package named ``tests``)."""
    name = "_autovision_tests_postgres"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("_postgres.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def postgres():
    """The session's throwaway PostgreSQL server (``tests/_postgres.py``), started on first
    use and stopped at the end; the test is skipped only when PostgreSQL is not installed."""
    pg = _load_postgres()
    reason = pg.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    yield pg.server()
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The workspace database of the test: SQLite in the workspace (None) or a fresh
    PostgreSQL database at the head schema (its URL, set as ``AUTOVISION_DB_URL`` so every
    workspace and subprocess of the test uses it). Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("db_url")``."""
    if request.param == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres")
    url = server.create_database()
    monkeypatch.setenv("AUTOVISION_DB_URL", url)
    yield url
    server.drop_database(url)  # WITH (FORCE): connections still pooled are closed


@pytest.fixture
def workspace(request: pytest.FixtureRequest, tmp_path: Path):
    from autovision.workspace import Workspace

    if "db_url" in request.fixturenames:
        request.getfixturevalue("db_url")  # the database is chosen before the workspace opens
    return Workspace(tmp_path / "ws")


def _pattern(label_index: int, size: int, seed: int) -> np.ndarray:
    """A class-dependent pattern (colour + stripes) with per-image noise: learnable, distinct."""
    rng = np.random.default_rng(seed)
    base = np.array(
        [
            (220, 40, 40),
            (40, 200, 60),
            (50, 60, 220),
            (230, 200, 40),
            (160, 60, 200),
            (40, 200, 200),
        ][label_index % 6],
        dtype=np.float32,
    )
    yy, xx = np.mgrid[0:size, 0:size]
    period = 4 + 2 * (label_index % 4)
    stripes = ((xx + yy * (label_index % 3)) // period) % 2
    img = base[None, None, :] * (0.6 + 0.4 * stripes[..., None])
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def make_image() -> Callable[..., Image.Image]:
    """``make_image(label_index=0, size=32, seed=0)`` -> RGB PIL image."""

    def make(label_index: int = 0, size: int = 32, seed: int = 0) -> Image.Image:
        return Image.fromarray(_pattern(label_index, size, seed))

    return make


@pytest.fixture
def image_bytes(make_image) -> Callable[..., bytes]:
    """``image_bytes(label_index=0, size=32, seed=0, fmt="PNG")`` -> encoded bytes."""

    def encode(label_index: int = 0, size: int = 32, seed: int = 0, fmt: str = "PNG") -> bytes:
        buf = io.BytesIO()
        make_image(label_index, size, seed).save(buf, format=fmt)
        return buf.getvalue()

    return encode


@pytest.fixture
def image_folder(tmp_path: Path, make_image) -> Callable[..., Path]:
    """``image_folder(labels=("cat","dog"), per_label=12, size=32)`` -> SOURCE/<label>/<i>.png."""

    def build(
        labels: tuple[str, ...] = ("cat", "dog"), per_label: int = 12, size: int = 32, seed: int = 0
    ) -> Path:
        root = tmp_path / f"src-{seed}-{len(labels)}-{per_label}"
        for li, label in enumerate(labels):
            (root / label).mkdir(parents=True, exist_ok=True)
            for i in range(per_label):
                make_image(li, size, seed * 10_000 + li * 1000 + i).save(
                    root / label / f"{i:03d}.png"
                )
        return root

    return build
