"""Read one source (local path or fsspec URL), decode it safely and resize it for the model.

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
    """A source ready for the model (``pixels`` uint8 [S, S, 3]) or why it is not."""

    source: str
    pixels: np.ndarray | None = None
    reason: str | None = None
    message: str | None = None


def read_source(source: str) -> bytes:
    """The bytes of a source; ``ImageDecodeError`` with ``missing_file``/``unreadable``."""
    local = local_path(source)
    try:
        if local is not None:
            with open(local, "rb") as fh:
                return fh.read()
        import fsspec

        with fsspec.open(source, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ImageDecodeError(P.MISSING_FILE, "no such file") from None
    except IsADirectoryError:
        raise ImageDecodeError(P.UNREADABLE, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageDecodeError(P.UNREADABLE, "permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(P.UNREADABLE, f"cannot read: {exc.strerror or exc}") from None


def load_source(
    source: str, spec: Preprocessing, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Loaded:
    """Read, decode and resize one source; never raises for a bad image."""
    try:
        data = read_source(source)
        image = decode_image(data, max_pixels=max_pixels).image
        return Loaded(source, pixels=resize_image(image, spec))
    except ImageDecodeError as exc:
        return Loaded(source, reason=exc.reason, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - one bad source never stops a run
        return Loaded(source, reason=P.UNREADABLE, message=f"{type(exc).__name__}: {exc}")
