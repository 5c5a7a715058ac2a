"""Encrypt what a workspace wrote before a key was set: blobs, model packages, checkpoints."""

from __future__ import annotations

from typing import Any

from autovision.errors import EncryptionError
from autovision.security import crypto

MODEL_FILES = ("model.onnx", "weights.safetensors", "best.safetensors")


def encrypt_workspace(ws: Any) -> dict[str, Any]:
    """Encrypt, in place, every plaintext blob, package weight file and run checkpoint of
    ``ws`` with the configured key; counts of what was encrypted."""
    from autovision.models.package import read_model_file, write_model_file

    key = crypto.configured_key()
    if key is None:
        raise EncryptionError(
            f"no encryption key configured: set {crypto.ENV_KEY} or {crypto.ENV_KEY_FILE}"
        )
    if ws.blobs.key is None or ws.blobs.key.id != key.id:
        raise EncryptionError("the workspace was opened before the key was set: open it again")
    blobs = ws.blobs.encrypt_existing()
    files = 0
    for folder in (ws.models_dir, ws.root / "runs"):
        for name in MODEL_FILES:
            for path in sorted(folder.rglob(name)) if folder.is_dir() else ():
                if crypto.is_encrypted(path.read_bytes()[: len(crypto.MAGIC)]):
                    continue
                write_model_file(path, read_model_file(path))
                files += 1
    from autovision.workspace import packages

    for folder in sorted(ws.models_dir.iterdir()) if ws.models_dir.is_dir() else ():
        packages.publish(ws, folder.name, folder)  # a remote blob store gets the new bytes
    return {"key_id": key.id, "blobs": blobs, "model_files": files}
