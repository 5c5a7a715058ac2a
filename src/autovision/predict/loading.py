"""Read one source (local path or fsspec URL), decode it safely, resize and normalize it
into its slot of the batch array.

Runs in worker threads: Pillow releases the GIL while decoding and resizing, so the two
cores decode while ONNX Runtime runs the previous batch. No process pool, so nothing is
ever pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autovision.data import problems as P
from autovision.data.decode import DEFAULT_MAX_PIXELS, decode_image
from autovision.errors import ImageDecodeError
from autovision.models.preprocess import Preprocessing, resize_image
from autovision.predict.inputs import local_path


@dataclass(frozen=True)
class Loaded:
    """Whether a source made it into its batch slot, and why not."""

    source: str
    ok: bool
    reason: str | None = None
    message: str | None = None


def read_source(source: str) -> bytes:
    """The bytes of a source; ``ImageDecodeError`` with ``missing_file``/``unreadable``."""
    local = local_path(source)
    try:
        if local is not None:
            with open(local, "rb") as fh:
                return fh.read()
        from autovision.workspace.storage import read_bytes

        return read_bytes(source)
    except FileNotFoundError:
        raise ImageDecodeError(P.MISSING_FILE, "no such file") from None
    except IsADirectoryError:
        raise ImageDecodeError(P.UNREADABLE, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageDecodeError(P.UNREADABLE, "permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(P.UNREADABLE, f"cannot read: {exc.strerror or exc}") from None


def normalize_into(pixels: np.ndarray, spec: Preprocessing, out: np.ndarray) -> None:
    """uint8 [S, S, 3] -> ``out`` float32 [3, S, S]: the numbers of
    :func:`~autovision.models.preprocess.normalize`, written in place (no batch copy)."""
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    np.subtract(pixels.transpose(2, 0, 1), mean, out=out, dtype=np.float32)
    np.divide(out, std, out=out)


def load_into(
    source: str, spec: Preprocessing, out: np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Loaded:
    """Read, decode, resize and normalize one source into ``out``; never raises for a bad
    image."""
    try:
        data = read_source(source)
        image = decode_image(data, max_pixels=max_pixels).image
        normalize_into(resize_image(image, spec), spec, out)
        return Loaded(source, ok=True)
    except ImageDecodeError as exc:
        return Loaded(source, ok=False, reason=exc.reason, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - one bad source never stops a run
        return Loaded(source, ok=False, reason=P.UNREADABLE, message=f"{type(exc).__name__}: {exc}")
