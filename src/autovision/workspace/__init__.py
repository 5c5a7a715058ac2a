"""The workspace: one directory with the metadata database, the blob store and the models."""

from autovision.workspace._workspace import Workspace, resolve_workspace_path

__all__ = ["Workspace", "resolve_workspace_path"]
