"""Named models and their versions: ``NAME@3``, aliases such as ``NAME@production``, the
history of every alias move, and rollback.

Not the backbone registry (:mod:`autovision.models.registry`, the architectures a search can
pick) and not dataset versions (:mod:`autovision.data`): a *named model* groups the trained
model packages of one task, numbered 1, 2, 3 in creation order.
"""

from autovision.versions.refs import Ref, check_alias, check_model_name, parse_ref
from autovision.versions.store import (
    AliasEvent,
    ModelVersion,
    add_version,
    alias_target,
    aliases,
    delete_alias,
    history,
    list_versions,
    names,
    record_decision,
    register_version,
    resolve,
    rollback,
    set_alias,
)

__all__ = [
    "AliasEvent",
    "ModelVersion",
    "Ref",
    "add_version",
    "register_version",
    "alias_target",
    "aliases",
    "check_alias",
    "check_model_name",
    "delete_alias",
    "history",
    "list_versions",
    "names",
    "parse_ref",
    "record_decision",
    "resolve",
    "rollback",
    "set_alias",
]
