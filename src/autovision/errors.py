"""Error types. Messages name the file, row and reason; the CLI prints them as one line."""

from __future__ import annotations


class AutovisionError(Exception):
    """Base class of every error autovision raises on purpose."""


class WorkspaceError(AutovisionError):
    """The workspace cannot be opened or is inconsistent."""


class DatasetError(AutovisionError):
    """A dataset source or dataset version is unusable (missing, empty, wrong labels...)."""


class ImageDecodeError(AutovisionError):
    """An image could not be decoded safely.

    ``reason`` is one of the problem reasons of :mod:`autovision.data.problems`.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ModelError(AutovisionError):
    """A model package is missing, incomplete or does not fit the request."""


class TrainingError(AutovisionError):
    """Training cannot start or cannot go on (too few labels, empty train split...)."""


class EncryptionError(WorkspaceError):
    """Encrypted data cannot be read: no key, the wrong key, or the data was changed."""


class JobError(AutovisionError):
    """A background job is unknown, cannot start, or cannot be cancelled or resumed."""


class SchemaError(WorkspaceError):
    """The workspace database's schema is not the one this autovision needs (too new, or
    outdated with upgrades on open turned off)."""


class PipelineError(AutovisionError):
    """A pipeline file is invalid, a stage cannot run, or a gate stopped the pipeline."""


class StorageError(AutovisionError):
    """Object storage cannot be used: no credentials, no such bucket, or the endpoint does
    not answer. The message names the URL."""


class ClusterError(AutovisionError):
    """A Ray cluster cannot be reached, or a job on it failed."""
